// A person approving one call in a real browser: Debian's Chromium, headless, driven by
// playwright-core. It opens an authorization URL, signs in as USER_NAME where a sign-in form
// (`#login`) asks, reads what the consent page asks the person to approve (the `.approvals`
// list: each bound argument's value in a `.value`), picks USER_NAME where the page offers a
// user list, presses Approve (Deny with DECISION=deny), and stops at the redirect back to the
// client (a URL starting with REDIRECT, answered here without reaching the network).
// Prints {"approvals": text, "values": [...], "redirected": url}.
//
// usage: USER_NAME=alice REDIRECT=http://127.0.0.1:9/callback node approve-browser.mjs <url>
import { launchChromium } from './browser.mjs';

const [url] = process.argv.slice(2);
const user = process.env.USER_NAME ?? 'alice';
const redirect = process.env.REDIRECT;
const approve = (process.env.DECISION ?? 'approve') === 'approve';
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const back = new Promise((resolve) => {
    page.route((u) => u.href.startsWith(redirect), async (route) => {
      resolve(route.request().url());
      await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back at the client' });
    });
  });
  await page.goto(url);
  for (let signIns = 0; ; signIns++) {
    await page.waitForSelector('.approvals, #login', { timeout: 20000 });
    if (!(await page.$('#login'))) break;
    if (signIns > 2) throw new Error(`still asked to sign in at ${page.url()}`);
    await page.fill('#login', user);
    await Promise.all([page.waitForNavigation(), page.click('#signin')]);
  }
  const approvals = (await page.textContent('.approvals')).replace(/\s+/g, ' ').trim();
  const values = await page.$$eval('.approvals .value', (els) => els.map((e) => e.textContent));
  if (await page.$('select[name=user]')) await page.selectOption('select[name=user]', user);
  const button = approve ? 'button[value=approve], #allow' : 'button[value=deny], #deny';
  const [redirected] = await Promise.all([back, page.click(button)]);
  console.log(JSON.stringify({ approvals, values, redirected }));
} finally {
  await browser.close();
}
