//! Pagination of list results: opaque cursors, fixed page size.
//!
//! Owns: the cursor format and the page size. Must not: decide what a caller may see (the
//! list handlers filter with the one authorization decision before paging).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rmcp::ErrorData;
use rmcp::model::PaginatedRequestParams;
use serde_json::{Value, json};

/// Items per page of a list result.
const PAGE_SIZE: usize = 100;

fn decode_cursor(cursor: Option<&str>) -> Result<usize, ErrorData> {
    let Some(c) = cursor else { return Ok(0) };
    B64.decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ErrorData::invalid_params("invalid pagination cursor", None))
}

/// One page of `items` starting at the request's cursor, as `{key: [...], nextCursor?}`.
pub(super) fn page(
    key: &str,
    items: Vec<Value>,
    request: Option<&PaginatedRequestParams>,
) -> Result<Value, ErrorData> {
    let cursor = request
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v["cursor"].as_str().map(str::to_string));
    let start = decode_cursor(cursor.as_deref())?;
    if start > items.len() {
        return Err(ErrorData::invalid_params(
            "pagination cursor is past the end of the list",
            None,
        ));
    }
    let end = (start + PAGE_SIZE).min(items.len());
    let mut out = json!({ key: items[start..end].to_vec() });
    if end < items.len() {
        out["nextCursor"] = B64.encode(format!("o:{end}")).into();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor_of(v: &Value) -> Option<PaginatedRequestParams> {
        v.get("nextCursor")
            .map(|c| serde_json::from_value(json!({"cursor": c})).unwrap())
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let items: Vec<Value> = (0..250).map(|i| json!(i)).collect();
        let mut seen = Vec::new();
        let mut request = None;
        loop {
            let p = page("tools", items.clone(), request.as_ref()).unwrap();
            seen.extend(p["tools"].as_array().unwrap().iter().cloned());
            request = cursor_of(&p);
            if request.is_none() {
                break;
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn bad_cursors_are_invalid_params() {
        for bad in ["not-base64!", "eDo1", ""] {
            let request: PaginatedRequestParams =
                serde_json::from_value(json!({"cursor": bad})).unwrap();
            let e = page("tools", vec![json!(1)], Some(&request)).unwrap_err();
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
        }
        let past: PaginatedRequestParams =
            serde_json::from_value(json!({"cursor": B64.encode("o:99")})).unwrap();
        assert!(page("tools", vec![json!(1)], Some(&past)).is_err());
    }
}
