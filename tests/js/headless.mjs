// Headless authorization for tests: follow an authorization server's redirects (login,
// consent) with a cookie jar until it sends the browser to the client's redirect URI.
export function cookieJarFollower(redirectUrl) {
  const jar = new Map();
  return async function followToCode(start) {
    let url = start;
    for (let i = 0; i < 20; i++) {
      const cookie = [...jar.entries()].map(([k, v]) => `${k}=${v}`).join('; ');
      const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
      for (const c of res.headers.getSetCookie()) {
        const [kv] = c.split(';');
        const [k, v] = kv.split('=');
        jar.set(k.trim(), v);
      }
      const location = res.headers.get('location');
      if (!location) throw new Error(`authorization stopped at ${url}: HTTP ${res.status} ${await res.text()}`);
      const next = new URL(location, url);
      if (next.href.startsWith(redirectUrl)) {
        if (next.searchParams.get('error')) throw new Error(`authorization failed: ${next.search}`);
        return { code: next.searchParams.get('code'), state: next.searchParams.get('state'), iss: next.searchParams.get('iss') };
      }
      url = next.href;
    }
    throw new Error('too many redirects');
  };
}
