//! Test fixture: a valid component that does not implement the Portcullis plugin world.
wit_bindgen::generate!({ world: "unrelated", path: "wit" });

struct Unrelated;

impl Guest for Unrelated {
    fn run() -> String {
        "I am not a Portcullis plugin".into()
    }
}

export!(Unrelated);
