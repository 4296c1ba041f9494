"""The host imports, reached through one place: the component's imports inside a plugin, the
installed test host in native tests."""

_installed = []


def install(host):
    _installed.append(host)


def uninstall():
    _installed.pop()


def host():
    if _installed:
        return _installed[-1]
    try:
        from ._component import ComponentHost
    except ImportError as e:  # not inside a component
        raise RuntimeError(
            "a host import was called outside a gateway: in tests, call the plugin through "
            "portcullis_sdk.testing.TestHost"
        ) from e
    return ComponentHost()
