// The host side of the SDK, reached through one place: the host imports (inside a
// component, the ones component.js installs; in native tests, the installed TestHost) and
// the WIT boundary `Plugin.exports()` hands a plugin to (component.js; none natively).
// Nothing else in the SDK touches either.

const installed = [];
let boundary = () => ({});

export function install(host) {
  installed.push(host);
}

export function uninstall() {
  installed.pop();
}

export function current() {
  const host = installed[installed.length - 1];
  if (!host) {
    throw new Error(
      "a host import was called outside a gateway: in tests, call the plugin through TestHost from 'portcullis-sdk/testing'",
    );
  }
  return host;
}

/** Set by component.js, which is evaluated before the app module. */
export function setBoundary(exportsOf) {
  boundary = exportsOf;
}

export function exportsOf(plugin) {
  return boundary(plugin);
}
