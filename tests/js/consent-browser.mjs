// A real browser through the consent flow: Debian's Chromium, headless, driven by
// playwright-core. It opens the consent URL, signs in on each sign-in form it meets (the
// user for each origin from USERS, a JSON object origin → login), allows each consent page,
// and stops at the gateway's last page. Prints {"status": ..., "url": ..., "message": ...,
// "visited": [every page the main frame loaded]}.
//
// usage: USERS='{"http://127.0.0.1:1234": "alice"}' node consent-browser.mjs <url>
import { launchChromium } from './browser.mjs';

const [url] = process.argv.slice(2);
const users = JSON.parse(process.env.USERS ?? '{}');
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  let status = 0;
  const visited = [];
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
      status = r.status();
      visited.push(r.url());
    }
  });
  await page.goto(url);
  for (let i = 0; i < 10; i++) {
    await page.waitForSelector('#login, #allow, #message', { timeout: 20000 });
    if (await page.$('#message')) break;
    if (await page.$('#login')) {
      const origin = new URL(page.url()).origin;
      await page.fill('#login', users[origin] ?? 'nobody');
      await Promise.all([page.waitForNavigation(), page.click('#signin')]);
    } else {
      await Promise.all([page.waitForNavigation(), page.click('#allow')]);
    }
  }
  const message = await page.textContent('#message');
  console.log(JSON.stringify({ status, url: page.url(), message, visited }));
} finally {
  await browser.close();
}
