// A browser without a screen for the consent flow: open a URL and follow every redirect (the
// gateway's consent routes, the identity provider's and the service provider's headless
// sign-in and consent), keeping cookies per origin, until a page answers. Prints
// {"status": ..., "url": ..., "message": ...} (the page's #message text) and, with
// RECORD=1, "visited": every URL on the way and "cookies": the browser's cookies by origin
// (COOKIES set to those continues as the same browser).
//
// With STOP_AT=<prefix> it stops before opening the first URL starting with it, and prints
// {"stopped": <that URL>} (to hand the rest of a flow to another browser), with RECORD=1
// also the cookies.
//
// usage: node consent-follow.mjs <url>
// COOKIES (the `cookies` an earlier run printed) continues as that browser.
const cookiesByOrigin = () => Object.fromEntries([...jar.entries()].map(([o, c]) => [o, Object.fromEntries(c)]));
const jar = new Map(Object.entries(JSON.parse(process.env.COOKIES ?? '{}')).map(([o, c]) => [o, new Map(Object.entries(c))]));
const visited = [];
let url = process.argv[2];
for (let i = 0; i < 30; i++) {
  if (process.env.STOP_AT && url.startsWith(process.env.STOP_AT)) {
    console.log(JSON.stringify({ stopped: url, ...(process.env.RECORD ? { cookies: cookiesByOrigin() } : {}) }));
    process.exit(0);
  }
  visited.push(url);
  const origin = new URL(url).origin;
  const cookies = jar.get(origin) ?? new Map();
  const cookie = [...cookies.entries()].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  for (const c of res.headers.getSetCookie()) {
    const [kv] = c.split(';');
    const at = kv.indexOf('=');
    cookies.set(kv.slice(0, at).trim(), kv.slice(at + 1));
  }
  jar.set(origin, cookies);
  const location = res.headers.get('location');
  if (location && res.status >= 300 && res.status < 400) {
    url = new URL(location, url).href;
    continue;
  }
  const body = await res.text();
  const message = body.match(/<p id="message">([\s\S]*?)<\/p>/)?.[1] ?? body.slice(0, 500);
  console.log(JSON.stringify({ status: res.status, url, message, ...(process.env.RECORD ? { visited, cookies: cookiesByOrigin() } : {}) }));
  process.exit(0);
}
throw new Error('too many redirects');
