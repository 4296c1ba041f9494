"""``python -m portcullis_sdk build APP.py -o PLUGIN.wasm``: build a plugin component with
componentize-py (world ``any-plugin`` of the WIT this SDK ships), the app's directory and
this SDK on the module path."""

import argparse
import pathlib
import subprocess
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m portcullis_sdk")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a plugin component")
    build.add_argument("app", help="the app module's file, e.g. app.py")
    build.add_argument("-o", "--output", required=True, help="the .wasm to write")
    build.add_argument("-p", "--path", action="append", default=[],
                       help="more directories with pure-Python modules to include")
    args = parser.parse_args(argv)
    app = pathlib.Path(args.app).resolve()
    sdk = pathlib.Path(__file__).resolve().parent
    command = [
        sys.executable, "-c", "import sys; from componentize_py import script; sys.exit(script())",
        "-d", str(sdk / "wit" / "plugin.wit"),
        "-w", "any-plugin",
        "componentize", app.stem,
        "-p", str(app.parent),
        "-p", str(sdk.parent),
    ]
    for extra in args.path:
        command += ["-p", extra]
    command += ["-o", args.output]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
