// Real-browser end-to-end tests of Cloakroom's server-rendered pages: Playwright (playwright-core)
// driving Debian's Chromium against a running `cloakroom serve`.
//
// Environment:
//   CLOAKROOM_E2E_BASE_URL   the server's public URL, e.g. http://localhost:8080 (required). The
//                            browser must reach the server at exactly this origin: the server
//                            refuses form posts from any other, and the `__Host-` cookie is
//                            only accepted over HTTPS or from localhost.
//   CLOAKROOM_E2E_CHROMIUM   the browser binary (default /usr/bin/chromium)
//   CLOAKROOM_E2E_ARTIFACTS  where the screenshot goes (default: a new temporary directory)
//   CLOAKROOM_E2E_CLOCK_DIR  where to ask the server's test clock to move on (set by `e2e.rs`,
//                            whose server reads time from a clock it controls); without it, the
//                            test that needs an expired session is skipped. The same directory
//                            is where mail is asked for (`mail-request`, answered with
//                            `mail.json`): without it, the test that follows mailed links is
//                            skipped
//
// Run: `CLOAKROOM_E2E_BASE_URL=http://localhost:8080 npm test` (from this directory) against a
// server started by hand, or `cargo test -p cloakroom-server e2e`, which starts one. Every run
// signs up fresh users, so a server with data in it is fine.
//
// Each test asserts what a user (or an attacker) can observe in the browser: where a navigation
// ends, what the page says, which cookies the browser kept, what a request carried.

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';

import { chromium } from 'playwright-core';

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(2);
}

const BASE = (process.env.CLOAKROOM_E2E_BASE_URL ?? '').replace(/\/+$/, '');
if (!BASE) fail('set CLOAKROOM_E2E_BASE_URL to the server\'s public URL, e.g. http://localhost:8080');
let HOST;
let ORIGIN;
try {
  ({ hostname: HOST, origin: ORIGIN } = new URL(BASE));
} catch {
  fail(`CLOAKROOM_E2E_BASE_URL is not a URL: ${JSON.stringify(BASE)}`);
}
const CHROMIUM = process.env.CLOAKROOM_E2E_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.CLOAKROOM_E2E_ARTIFACTS || mkdtempSync(join(tmpdir(), 'cloakroom-e2e-'));
const CLOCK_DIR = process.env.CLOAKROOM_E2E_CLOCK_DIR || '';

const COOKIE = '__Host-cloakroom';
const PASSWORD = 'correct horse battery staple';
// Fresh names on every run: 3–32 characters of [A-Za-z0-9._-].
const RUN = randomBytes(4).toString('hex');
const user = (name) => `${name}-${RUN}`;

// Devices, told apart on "Your devices" by the label the server derives from the UA. The
// default profile keeps Chromium's own ("… HeadlessChrome/156.0.0.0 …" on Linux).
const LAPTOP = 'Chrome on Linux';
const PHONE_UA = 'Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0';
const PHONE = 'Firefox on Android';
const IPHONE_UA =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const IPHONE = 'Safari on iPhone';
const WINDOWS_UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
const WINDOWS = 'Firefox on Windows';

const url = (path) => `${BASE}${path}`;
// The login page a signed-out visit to `path` is sent to.
const loginFor = (path) => url(`/login?next=${encodeURIComponent(path)}`);

let browser;
let evil;
// Every browser profile a test opened (closed after it), and what went wrong on our pages.
const open = [];
const problems = [];

before(async () => {
  try {
    const health = await fetch(url('/healthz'));
    if (!health.ok) throw new Error(`HTTP ${health.status}`);
  } catch (e) {
    fail(`the server does not answer at ${url('/healthz')}: ${e.cause?.message ?? e.message}`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright adds --headless and a fresh temporary --user-data-dir itself. The rest keep
    // Chromium off the (closed) network and quiet: without them it keeps trying to reach
    // Google's services.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  evil = await startEvilServer();
});

after(async () => {
  await browser?.close();
  await evil?.close();
});

// Whatever a test did, none of the server's pages may have logged a script error, a Content
// Security Policy violation or one of Chromium's [DOM] warnings about forms (missing
// autocomplete, duplicate ids, password fields without a username...).
afterEach(async () => {
  for (const context of open.splice(0)) await context.close();
  assert.deepEqual(problems.splice(0), [], 'console of the server\'s pages');
});

function ours(page) {
  return page?.url().startsWith(`${ORIGIN}/`) ?? false;
}

/** A new browser profile ("device"): its own cookie jar. */
async function device({ userAgent, javaScriptEnabled = true } = {}) {
  const context = await browser.newContext({ userAgent, javaScriptEnabled });
  open.push(context);
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  context.on('console', (msg) => {
    const text = msg.text();
    // Error pages (401, 403, 409, ...) are "failed resource loads" to the console; the tests
    // check those pages themselves. The server has no favicon. Any other resource must load.
    const from = msg.location().url;
    const expected = from === msg.page()?.url() || from === url('/favicon.ico');
    if (text.startsWith('Failed to load resource') && expected) return;
    if ((msg.type() === 'error' || text.startsWith('[DOM]')) && ours(msg.page())) {
      problems.push(`${msg.type()} on ${msg.page().url()}: ${text}`);
    }
  });
  context.on('weberror', (e) => {
    if (ours(e.page())) problems.push(`script error on ${e.page().url()}: ${e.error().message}`);
  });
  const page = await context.newPage();
  return { context, page };
}

/** The session cookie as the browser stored it, or undefined. */
async function sessionCookie(context) {
  const all = await context.cookies(BASE);
  const ours = all.filter((c) => c.name === COOKIE);
  assert.ok(ours.length <= 1, `one session cookie at most, got ${JSON.stringify(ours)}`);
  return ours[0];
}

async function signUp(page, username, password = PASSWORD) {
  await page.goto(url('/signup'));
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(url('/'));
  await expectHome(page, username);
}

async function fillLogin(page, username, password) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function logIn(page, username, password = PASSWORD) {
  await page.goto(url('/login'));
  await fillLogin(page, username, password);
  await page.waitForURL(url('/'));
  await expectHome(page, username);
}

async function expectHome(page, username) {
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), `Hello, ${username}`);
  assert.equal(
    (await page.getByRole('navigation', { name: 'Account' }).locator('.who').textContent()).trim(),
    `Signed in as ${username}`,
  );
}

/**
 * A visit to `/` ends on the login page: this browser has no (live) session. `notice` is what
 * the login page is told about it: `ended` for a browser that still holds the cookie of a
 * session ended elsewhere, none for one without a cookie.
 */
async function expectSignedOut(page, who = 'this browser', notice = undefined) {
  // `goto` resolves once the last document of the redirect chain has loaded.
  await page.goto(url('/'));
  const expected = notice ? `${loginFor('/')}&notice=${notice}` : loginFor('/');
  assert.equal(page.url(), expected, `${who} is signed out: / redirects to the login page`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
}

/** A visit to `/` shows the account home of `username`. */
async function expectSignedIn(page, username, who = 'this browser') {
  await page.goto(url('/'));
  assert.equal(page.url(), url('/'), `${who} is still signed in: / shows the account home`);
  await expectHome(page, username);
}

/**
 * The error `message` sits under the input `field`: the input is `aria-invalid="true"`, its
 * `aria-describedby` names the error, it has the focus, and it is the only invalid field.
 */
async function expectFieldError(page, field, message) {
  const input = page.locator(`input#${field}`);
  assert.equal(await input.getAttribute('aria-invalid'), 'true', `#${field} is aria-invalid`);
  const described = ((await input.getAttribute('aria-describedby')) ?? '').split(/\s+/);
  assert.ok(described.includes(`${field}-error`), `#${field} is described by its error: ${described}`);
  const error = page.locator(`#${field}-error`);
  assert.equal(await error.textContent(), message);
  // What assistive technology reads for the field: its description includes the error.
  assert.ok(
    (await input.evaluate((el) =>
      el.getAttribute('aria-describedby').split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? '').join(' '),
    )).includes(message),
    'the description resolves to the message',
  );
  const [inputBox, errorBox] = [await input.boundingBox(), await error.boundingBox()];
  assert.ok(errorBox.y >= inputBox.y + inputBox.height, 'the error is under its field');
  assert.ok(errorBox.x >= inputBox.x - 1, 'aligned with its field');
  assert.equal(await page.evaluate(() => document.activeElement?.id), field, 'the field has the focus');
  assert.equal(await page.locator('[aria-invalid="true"]').count(), 1, 'only this field is invalid');
}

/**
 * Moves the server's clock on by `seconds` (the server of `e2e.rs` reads a clock the test
 * controls): writes the request, waits until the server took it.
 */
async function advanceServerClock(seconds) {
  const file = join(CLOCK_DIR, 'advance');
  writeFileSync(`${file}.tmp`, String(seconds));
  renameSync(`${file}.tmp`, file);
  for (let i = 0; i < 100 && existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!existsSync(file), 'the server moved its clock on');
}

/**
 * The messages to `address` whose subject contains `subject`, once there are `n`: asks the
 * harness of `e2e.rs` for what its SMTP sink holds (`mail-request`, answered with `mail.json`,
 * each message as Python's `email` package decodes it).
 */
async function mailsTo(address, subject, n = 1) {
  const request = join(CLOCK_DIR, 'mail-request');
  for (let attempt = 0; attempt < 100; attempt++) {
    writeFileSync(`${request}.tmp`, '');
    renameSync(`${request}.tmp`, request);
    for (let i = 0; i < 100 && existsSync(request); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!existsSync(request), 'the harness answered the mail request');
    const found = JSON.parse(readFileSync(join(CLOCK_DIR, 'mail.json'), 'utf8')).filter(
      (m) => m.headers.To === address && m.headers.Subject.includes(subject),
    );
    if (found.length >= n) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`no ${JSON.stringify(subject)} mail to ${address}`);
}

/** The link in a message's text body that contains `path`. */
function linkIn(message, path) {
  const line = message.text.split('\n').find((l) => l.includes(path));
  assert.ok(line, `a ${path} link in: ${message.text}`);
  assert.ok(line.trim().startsWith(url(path)), `the link is on this server: ${line}`);
  return line.trim();
}

/** The rows of "Your devices", as { label, current } in page order. */
async function devices(page) {
  const rows = page.locator('ul.devices > li');
  const out = [];
  for (const row of await rows.all()) {
    out.push({
      label: (await row.locator('strong').first().textContent()).trim(),
      current: (await row.getByText('This device', { exact: true }).count()) === 1,
    });
  }
  return out;
}

test('sign-up works without JavaScript and sets a __Host- session cookie', async () => {
  const { context, page } = await device({ javaScriptEnabled: false });
  // Nothing on the pages may depend on script: this profile cannot run any.
  await page.goto(`${evil.crossSite}/script-probe`);
  assert.equal(await page.locator('#out').textContent(), 'no script ran', 'JavaScript is off');
  await signUp(page, user('ada'));

  const all = await context.cookies();
  assert.deepEqual(
    all.map((c) => c.name),
    [COOKIE],
    'the server sets exactly one cookie, the session cookie',
  );
  const c = all[0];
  assert.match(c.value, /^[A-Za-z0-9_-]{43}$/, 'an opaque 256-bit token, base64url');
  assert.equal(c.httpOnly, true, 'HttpOnly');
  assert.equal(c.secure, true, 'Secure');
  assert.equal(c.sameSite, 'Lax', 'SameSite=Lax');
  assert.equal(c.path, '/', 'Path=/');
  // Playwright shows a Domain cookie with a leading dot; a host-only cookie as the bare host.
  assert.equal(c.domain, HOST, 'host-only (no Domain attribute)');
  assert.equal(c.expires, -1, 'a session cookie: no Expires/Max-Age without "remember me"');
});

test('"Your devices": revoke another device with its button', async () => {
  const name = user('bea');
  const laptop = await device();
  await signUp(laptop.page, name);
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);

  await laptop.page.goto(url('/account/sessions'));
  const before = await devices(laptop.page);
  assert.equal(before.length, 2, JSON.stringify(before));
  assert.deepEqual(
    before.filter((d) => d.current).map((d) => d.label),
    [LAPTOP],
    'exactly one "This device" badge, on this browser',
  );
  assert.ok(before.some((d) => d.label === PHONE && !d.current), JSON.stringify(before));

  // A script cannot read the ticket: HttpOnly, as the browser enforces it.
  assert.equal(await laptop.page.evaluate(() => document.cookie), '');

  // Evidence for people: what "Your devices" looks like (not committed).
  const shot = join(ARTIFACTS, 'your-devices.png');
  await laptop.page.screenshot({ path: shot, fullPage: true });
  const png = readFileSync(shot);
  assert.ok(png.length > 1000, `screenshot ${shot} is ${png.length} bytes`);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
  console.log(`# screenshot: ${shot}`);

  await laptop.page.getByRole('button', { name: `Sign out ${PHONE}` }).click();
  await laptop.page.waitForURL(url('/account/sessions?revoked=1'));
  assert.equal(await laptop.page.getByRole('status').textContent(), 'Signed out 1 device.');
  assert.deepEqual(await devices(laptop.page), [{ label: LAPTOP, current: true }]);

  await expectSignedOut(phone.page, 'the phone', 'ended');
  await expectSignedIn(laptop.page, name);
});

test('"Sign out of all other devices" signs out every other browser', async () => {
  const name = user('cleo');
  const laptop = await device();
  await signUp(laptop.page, name);
  const iphone = await device({ userAgent: IPHONE_UA });
  await logIn(iphone.page, name);
  const windows = await device({ userAgent: WINDOWS_UA });
  await logIn(windows.page, name);

  await laptop.page.goto(url('/account/sessions'));
  const before = await devices(laptop.page);
  assert.deepEqual(before.map((d) => d.label).sort(), [LAPTOP, WINDOWS, IPHONE].sort());
  assert.equal(before.filter((d) => d.current).length, 1);

  await laptop.page.getByRole('button', { name: 'Sign out of all other devices' }).click();
  await laptop.page.waitForURL(url('/account/sessions?revoked=2'));
  assert.equal(await laptop.page.getByRole('status').textContent(), 'Signed out 2 devices.');
  assert.deepEqual(await devices(laptop.page), [{ label: LAPTOP, current: true }]);
  assert.equal(
    await laptop.page.getByRole('button', { name: 'Sign out of all other devices' }).count(),
    0,
    'nothing left to sign out of',
  );

  await expectSignedOut(iphone.page, 'the iPhone', 'ended');
  await expectSignedOut(windows.page, 'the Windows laptop', 'ended');
  await expectSignedIn(laptop.page, name);
});

test('changing the password signs out other devices and rotates this session', async () => {
  const name = user('dora');
  const newPassword = 'a different long passphrase';
  const laptop = await device();
  await signUp(laptop.page, name);
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);
  const ticketBefore = (await sessionCookie(laptop.context)).value;

  await laptop.page.goto(url('/account/password'));
  // A wrong current password is refused inline and changes nothing.
  await laptop.page.getByLabel('Current password').fill('not my password at all');
  await laptop.page.getByLabel('New password', { exact: true }).fill(newPassword);
  await laptop.page.getByLabel('Repeat the new password').fill(newPassword);
  await laptop.page.getByRole('button', { name: 'Change password' }).click();
  await laptop.page.getByRole('alert').waitFor();
  assert.match(await laptop.page.getByRole('alert').textContent(), /current password is wrong/);
  await expectSignedIn(phone.page, name);

  await laptop.page.goto(url('/account/password'));
  await laptop.page.getByLabel('Current password').fill(PASSWORD);
  await laptop.page.getByLabel('New password', { exact: true }).fill(newPassword);
  await laptop.page.getByLabel('Repeat the new password').fill(newPassword);
  await laptop.page.getByRole('button', { name: 'Change password' }).click();
  await laptop.page.waitForURL(url('/account/password?changed=1'));
  assert.equal(
    await laptop.page.getByRole('status').textContent(),
    'Password changed. 1 other device was signed out.',
  );

  const ticketAfter = (await sessionCookie(laptop.context))?.value;
  assert.ok(ticketAfter, 'this browser still holds a session cookie');
  assert.notEqual(ticketAfter, ticketBefore, 'the session was rotated (new ticket)');
  await expectSignedIn(laptop.page, name);
  await expectSignedOut(phone.page, 'the phone', 'ended');

  const fresh = await device();
  await fresh.page.goto(url('/login'));
  await fillLogin(fresh.page, name, PASSWORD);
  await fresh.page.getByRole('alert').waitFor();
  assert.match(await fresh.page.getByRole('alert').textContent(), /Invalid username or password\./);
  assert.equal(await sessionCookie(fresh.context), undefined, 'the old password does not log in');
  await logIn(fresh.page, name, newPassword);
});

test('a forgotten password is reset from the mailed link, without JavaScript', { skip: !CLOCK_DIR && 'no mail sink to read' }, async () => {
  const name = user('rhea');
  const address = `${name}@example.com`;
  const newPassword = 'a passphrase from the reset link';
  const laptop = await device({ javaScriptEnabled: false });
  await laptop.page.goto(url('/signup'));
  await laptop.page.getByLabel('Username').fill(name);
  await laptop.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await laptop.page.getByLabel('Repeat the password').fill(PASSWORD);
  await laptop.page.getByLabel('Email address (optional)').fill(address);
  await laptop.page.getByRole('button', { name: 'Create account' }).click();
  await laptop.page.waitForURL(url('/'));
  // Only a confirmed address gets reset links: confirm it from its mail, in this browser.
  const [confirm] = await mailsTo(address, 'Confirm');
  await laptop.page.goto(linkIn(confirm, '/verify-email?token='));
  // Opening the link shows what it confirms; the button does it.
  await laptop.page.getByRole('button', { name: 'Confirm' }).click();
  assert.equal(
    await laptop.page.getByRole('status').textContent(),
    `Your email address ${address} is confirmed.`,
  );
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);

  // Another browser, script off, whose user forgot the password.
  const fresh = await device({ javaScriptEnabled: false });
  await fresh.page.goto(url('/login'));
  await fresh.page.getByRole('link', { name: 'Forgot your password?' }).click();
  await fresh.page.waitForURL(url('/password-reset'));
  await fresh.page.getByLabel('Username or email address').fill(address);
  await fresh.page.getByRole('button', { name: 'Send the link' }).click();
  assert.match(await fresh.page.getByRole('status').textContent(), /a link to reset its password is on its way/);

  const [mail] = await mailsTo(address, 'Reset');
  assert.equal(mail.headers.From, 'login@example.com');
  const link = linkIn(mail, '/password-reset?token=');
  const requests = [];
  fresh.page.on('request', (r) => requests.push(r));
  const opened = await fresh.page.goto(link);
  assert.equal(opened.status(), 200);
  assert.equal(opened.headers()['referrer-policy'], 'no-referrer', 'the token stays out of Referer');
  assert.equal(await fresh.page.getByRole('heading', { level: 1 }).textContent(), 'Choose a new password');
  await fresh.page.getByLabel('New password', { exact: true }).fill(newPassword);
  await fresh.page.getByLabel('Repeat the new password').fill(newPassword);
  await fresh.page.getByRole('button', { name: 'Set the new password' }).click();
  await fresh.page.waitForURL(url('/?notice=password-reset'));
  assert.equal(
    await fresh.page.getByRole('status').textContent(),
    'Your new password is set. Every other device was signed out.',
  );
  await expectHome(fresh.page, name);
  for (const r of requests) {
    assert.ok(r.url().startsWith(ORIGIN), `nothing but this server was asked: ${r.url()}`);
    const referer = await r.headerValue('referer');
    assert.ok(!referer?.includes('token='), `no request carried the token in Referer: ${r.url()}`);
  }

  // Every other session ended; the old password is gone; the link is spent.
  await expectSignedOut(phone.page, 'the phone', 'ended');
  await expectSignedOut(laptop.page, 'the laptop', 'ended');
  const again = await device({ javaScriptEnabled: false });
  const reused = await again.page.goto(link);
  assert.equal(reused.status(), 410, 'a used link is gone');
  assert.match(await again.page.getByRole('alert').textContent(), /already used/);
  assert.ok(await again.page.getByRole('button', { name: 'Send a new link' }).isVisible(), 'a new link is offered');
  await again.page.goto(url('/login'));
  await fillLogin(again.page, name, PASSWORD);
  await again.page.getByRole('alert').waitFor();
  assert.equal(await sessionCookie(again.context), undefined, 'the old password does not sign in');
  await logIn(again.page, name, newPassword);
  await mailsTo(address, 'password was changed');
});

test('"Sign in with" an OpenID provider, without JavaScript, ends in a local session', { skip: !CLOCK_DIR && 'no provider' }, async () => {
  const name = user('olga');
  const { context, page } = await device({ javaScriptEnabled: false });
  await page.goto(loginFor('/account/sessions'));
  await page.getByRole('link', { name: 'Sign in with Fixture ID' }).click();
  // The provider's own page, on its own origin.
  assert.notEqual(new URL(page.url()).origin, ORIGIN, 'at the provider');
  await page.getByLabel('Login').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(url('/account/sessions'));
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Your devices');
  const ours = (await context.cookies(BASE)).map((c) => c.name);
  assert.deepEqual(ours, [COOKIE], 'the session cookie only: the pre-login cookie is gone');
  await expectSignedIn(page, name);
  // Sign out here ends the local session, as for any other.
  await page.getByRole('navigation', { name: 'Account' }).getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(url('/login?notice=signed-out'));
  await expectSignedOut(page);
});

test('login: errors inline, username kept, password never echoed, then back to `next`', async () => {
  const name = user('edda');
  const wrong = 'Wrong-Password-Never-Echoed';
  const setup = await device();
  await signUp(setup.page, name);

  const { context, page } = await device();
  await page.goto(url('/account/sessions'));
  await page.waitForURL(loginFor('/account/sessions'));

  await fillLogin(page, name, wrong);
  await page.getByRole('alert').waitFor();
  assert.equal(await page.getByRole('alert').textContent(), 'Invalid username or password.');
  assert.equal(await page.getByLabel('Username').inputValue(), name, 'the username is kept');
  assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password field is empty');
  assert.ok(!(await page.content()).includes(wrong), 'the password is not in the page');
  assert.equal(await sessionCookie(context), undefined, 'no session after a failed login');

  // The return path survived the failed attempt.
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(url('/account/sessions'));
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Your devices');
});

test('signing out ends the session; the old cookie does not bring it back', async () => {
  const name = user('fay');
  const { context, page } = await device();
  await signUp(page, name);
  const old = await sessionCookie(context);

  // Home has two "Sign out" buttons (header and page); use the page's own.
  await page.getByRole('main').getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(url('/login?notice=signed-out'));
  assert.equal(await page.getByRole('status').textContent(), 'You have been signed out.');
  assert.equal(await sessionCookie(context), undefined, 'the browser dropped the cookie');
  await expectSignedOut(page);

  // A thief who copied the ticket before logout gets nothing: the server forgot it.
  await context.addCookies([
    {
      name: COOKIE,
      value: old.value,
      domain: HOST,
      path: '/',
      secure: true,
      httpOnly: true,
      sameSite: 'Lax',
    },
  ]);
  assert.equal((await sessionCookie(context))?.value, old.value, 'the old cookie is back in the jar');
  const sent = page.waitForRequest((r) => r.url() === url('/'));
  await expectSignedOut(page, 'the thief', 'ended');
  const cookieHeader = (await (await sent).allHeaders()).cookie ?? '';
  assert.ok(cookieHeader.includes(`${COOKIE}=${old.value}`), 'the old cookie was presented');
});

test('"Keep me signed in" makes the cookie outlive the browser session', async () => {
  const name = user('gina');
  const setup = await device();
  await signUp(setup.page, name);

  const { context, page } = await device();
  await page.goto(url('/login'));
  await page.getByLabel('Keep me signed in').check();
  await fillLogin(page, name, PASSWORD);
  await page.waitForURL(url('/'));
  await expectHome(page, name);
  assert.match(await page.locator('dl.facts').textContent(), /\(kept signed in\)/);
  const c = await sessionCookie(context);
  const days = (c.expires - Date.now() / 1000) / 86_400;
  // The server's "remember me" absolute lifetime: 90 days by default.
  assert.ok(days > 1 && days <= 90, `a persistent cookie for up to 90 days, got ${days} days`);
  assert.deepEqual(
    { httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, domain: c.domain },
    { httpOnly: true, secure: true, sameSite: 'Lax', path: '/', domain: HOST },
    'otherwise the same cookie',
  );
});

// --- What the pages say (issue 18) ---------------------------------------------------------

test('the login page says why: signed out, session expired', { skip: !CLOCK_DIR && 'no clock to move' }, async () => {
  const name = user('hedy');
  const { page } = await device();
  await signUp(page, name);
  await page.getByRole('navigation', { name: 'Account' }).getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(url('/login?notice=signed-out'));
  assert.equal(await page.getByRole('status').textContent(), 'You have been signed out.');

  await logIn(page, name);
  // Past the idle timeout (30 minutes): the next page asked for finds the session expired.
  await advanceServerClock(31 * 60);
  await page.goto(url('/account/sessions'));
  assert.equal(page.url(), `${loginFor('/account/sessions')}&notice=expired`);
  assert.equal(
    await page.getByRole('status').textContent(),
    'Your session expired, please sign in again.',
  );
  // Signing in again goes where the visitor was going.
  await fillLogin(page, name, PASSWORD);
  await page.waitForURL(url('/account/sessions'));
});

test('form errors sit under their field, with aria-invalid and aria-describedby', async () => {
  const name = user('inez');
  const { page } = await device();
  await page.goto(url('/signup'));
  await page.getByLabel('Username').fill(name);
  // The browser's own length check would stop the form before the server sees it.
  await page.locator('#password').evaluate((el) => el.removeAttribute('minlength'));
  await page.getByLabel('Password', { exact: true }).fill('too short');
  await page.getByLabel('Repeat the password').fill('too short');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('alert').waitFor();
  await expectFieldError(page, 'password', 'The password must be at least 12 characters long.');
  assert.equal(await page.getByLabel('Username').inputValue(), name, 'the username is kept');

  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill(`${PASSWORD} but different`);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('alert').waitFor();
  await expectFieldError(page, 'confirm', 'The two passwords differ.');

  await signUp(page, name);
  await page.goto(url('/account/password'));
  await page.getByLabel('Current password').fill('not my password at all');
  await page.getByLabel('New password', { exact: true }).fill('another long passphrase');
  await page.getByLabel('Repeat the new password').fill('another long passphrase');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('alert').waitFor();
  await expectFieldError(page, 'current_password', 'Your current password is wrong.');
});

test('"Your devices" shows this device first', { skip: !CLOCK_DIR && 'no clock to move' }, async () => {
  const name = user('jill');
  const laptop = await device();
  await signUp(laptop.page, name);
  await advanceServerClock(10);
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);
  await advanceServerClock(10);
  const iphone = await device({ userAgent: IPHONE_UA });
  await logIn(iphone.page, name);

  // The phone is neither the newest session nor the oldest: by last use alone it would be
  // in the middle.
  await phone.page.goto(url('/account/sessions'));
  assert.deepEqual(await devices(phone.page), [
    { label: PHONE, current: true },
    { label: IPHONE, current: false },
    { label: LAPTOP, current: false },
  ]);
});

test('deleting the account: password again, every device out, the name free', async () => {
  const name = user('kim');
  const laptop = await device();
  await signUp(laptop.page, name);
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);

  await laptop.page.getByRole('link', { name: 'Delete your account' }).click();
  await laptop.page.waitForURL(url('/account/delete'));
  await laptop.page.getByLabel('Your password').fill('not my password at all');
  await laptop.page.getByRole('button', { name: 'Delete my account' }).click();
  await laptop.page.getByRole('alert').waitFor();
  await expectFieldError(laptop.page, 'password', 'Your current password is wrong.');
  await expectSignedIn(phone.page, name, 'after a wrong password, the phone');

  await laptop.page.goto(url('/account/delete'));
  await laptop.page.getByLabel('Your password').fill(PASSWORD);
  await laptop.page.getByRole('button', { name: 'Delete my account' }).click();
  await laptop.page.waitForURL(url('/login?notice=deleted'));
  assert.match(await laptop.page.getByRole('status').textContent(), /^Your account has been deleted\./);
  assert.equal(await sessionCookie(laptop.context), undefined, 'the browser dropped the cookie');
  await expectSignedOut(phone.page, 'the phone', 'ended');

  const again = await device();
  await again.page.goto(url('/login'));
  await fillLogin(again.page, name, PASSWORD);
  await again.page.getByRole('alert').waitFor();
  assert.equal(await again.page.getByRole('alert').textContent(), 'Invalid username or password.');
  // The name is free: a new account, with nothing of the old one.
  await signUp(again.page, name);
  await again.page.goto(url('/account/sessions'));
  assert.deepEqual(await devices(again.page), [{ label: LAPTOP, current: true }]);
});

// --- CSRF -----------------------------------------------------------------------------------
//
// The attacker's page is served from two places:
//   - http://127.0.0.1:P — another *site*. Chrome does not even send a SameSite=Lax cookie on a
//     cross-site POST, but it does accept cookies from the response to a top-level one: without
//     the server's refusal (Sec-Fetch-Site: cross-site), a cross-site POST to /login plants the
//     attacker's session in the victim's browser (checked by switching the refusal off). So
//     the refusal itself (403) is asserted too, not only the victim's unchanged state.
//   - http://localhost:P — another *origin on the same site* (like a sibling subdomain). Chrome
//     DOES send the victim's SameSite=Lax cookie there, so only the server's defences (Fetch
//     Metadata, the synchronizer token) stand between the attacker and the victim's session.

/**
 * The attacker's server: `/post?action=URL&field=value…` auto-submits a form to URL. Also
 * `/script-probe`, a page that says whether its script ran.
 */
async function startEvilServer() {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://evil.invalid');
    if (u.pathname === '/script-probe') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><title>probe</title><p id="out">no script ran</p>` +
          `<script>document.getElementById('out').textContent = 'script ran'</script>`,
      );
      return;
    }
    if (u.pathname !== '/post') {
      res.writeHead(404).end();
      return;
    }
    const esc = (s) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
    const fields = [...u.searchParams]
      .filter(([k]) => k !== 'action')
      .map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`)
      .join('');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      `<!doctype html><title>You won a prize</title>` +
        `<form method="post" action="${esc(u.searchParams.get('action'))}">${fields}</form>` +
        `<script>document.forms[0].submit()</script>`,
    );
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    crossSite: `http://127.0.0.1:${port}`,
    sameSite: `http://localhost:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const ATTACKERS = () => [
  { from: evil.crossSite, site: 'cross-site', cookieSent: false },
  { from: evil.sameSite, site: 'same-site', cookieSent: true },
];

/**
 * Sends `page` to the attacker's page at `from`, which auto-posts `fields` to `path` on the
 * server; returns the server's response to that post and the headers the browser sent.
 */
async function attack(page, from, path, fields = {}) {
  const target = url(path);
  const posted = page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
  const q = new URLSearchParams({ action: target, ...fields });
  await page.goto(`${from}/post?${q}`);
  const response = await posted;
  // Wherever the server sent the browser (an error page, a redirect), let it arrive.
  await page.waitForURL((u) => u.origin === ORIGIN);
  return { status: response.status(), headers: await response.request().allHeaders() };
}

/** The browser labelled the attacker's post as expected, and sent the cookie or not. */
function assertBrowserSent({ headers }, attacker, what) {
  assert.equal(headers['sec-fetch-site'], attacker.site, `${what}: Sec-Fetch-Site`);
  const carried = (headers.cookie ?? '').includes(`${COOKIE}=`);
  assert.equal(carried, attacker.cookieSent, `${what}: the browser sent the session cookie`);
}

/** The server answered the attacker's post with its refusal page. */
async function assertRefused({ status }, page, what) {
  assert.equal(status, 403, `${what}: the server refused the post`);
  assert.match(await page.getByRole('alert').textContent(), /refused|CSRF/i, `${what}: error page`);
}

test('CSRF: another site cannot log the victim out of devices or out of this browser', async () => {
  const name = user('gwen');
  const victim = await device();
  await signUp(victim.page, name);
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);

  for (const attacker of ATTACKERS()) {
    let what = `revoke-others posted from ${attacker.from}`;
    const r = await attack(victim.page, attacker.from, '/account/sessions/revoke-others');
    assertBrowserSent(r, attacker, what);
    await expectSignedIn(phone.page, name, `after ${what}, the victim's phone`);
    await assertRefused(r, victim.page, what);

    what = `logout posted from ${attacker.from}`;
    const l = await attack(victim.page, attacker.from, '/logout');
    assertBrowserSent(l, attacker, what);
    // In another tab, so that the refusal page stays where it is.
    const tab = await victim.context.newPage();
    await expectSignedIn(tab, name, `after ${what}, the victim`);
    await tab.close();
    await assertRefused(l, victim.page, what);
  }

  await victim.page.goto(url('/account/sessions'));
  const labels = (await devices(victim.page)).map((d) => d.label).sort();
  assert.deepEqual(labels, [LAPTOP, PHONE].sort(), 'both devices still signed in');
});

test('login CSRF: another site cannot sign the victim in as the attacker', async () => {
  const attackerName = user('mallory');
  const name = user('hana');
  const setup = await device();
  await signUp(setup.page, attackerName);
  const creds = { username: attackerName, password: PASSWORD, next: '/' };

  for (const attacker of ATTACKERS()) {
    // A victim with no session, who would otherwise end up working in the attacker's account.
    const what = `login posted from ${attacker.from} to a signed-out browser`;
    const anon = await device();
    const r = await attack(anon.page, attacker.from, '/login', creds);
    assertBrowserSent(r, { ...attacker, cookieSent: false }, what);
    assert.equal(await sessionCookie(anon.context), undefined, `${what}: no session cookie planted`);
    await assertRefused(r, anon.page, what);
    await expectSignedOut(anon.page, `after ${what}, the victim`);
  }

  // A signed-in victim stays signed in as themselves.
  const victim = await device();
  await signUp(victim.page, name);
  for (const attacker of ATTACKERS()) {
    const what = `login posted from ${attacker.from} to a signed-in browser`;
    const r = await attack(victim.page, attacker.from, '/login', creds);
    assertBrowserSent(r, attacker, what);
    await expectSignedIn(victim.page, name, `after ${what}, the victim`);
    // The refusal page is gone by now; the status is what the server said.
    assert.equal(r.status, 403, `${what}: the server refused the post`);
  }
});

// --- Accessibility smoke --------------------------------------------------------------------

/** Every rendered form control on the page, with its label texts. */
async function controls(page) {
  // Not rendered means not in the accessibility tree either (the change-password form carries
  // a `hidden` username field for password managers).
  return page.$$eval('input, select, textarea', (els) =>
    els.filter((el) => el.checkVisibility()).map((el) => ({
      name: el.name,
      labels: [...(el.labels ?? [])].map((l) => l.textContent.trim()).filter(Boolean),
    })),
  );
}

/** The WCAG contrast ratio of an element's text against the background it is drawn on. */
async function contrast(locator) {
  return locator.evaluate((el) => {
    const rgba = (css) => css.match(/[\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => {
      const lin = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
      return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    };
    let under = el;
    while (under && rgba(getComputedStyle(under).backgroundColor)[3] === 0) under = under.parentElement;
    const back = under ? rgba(getComputedStyle(under).backgroundColor) : [255, 255, 255];
    const [hi, lo] = [luminance(rgba(getComputedStyle(el).color)), luminance(back)].sort((a, b) => b - a);
    return (hi + 0.05) / (lo + 0.05);
  });
}

function assertAllLabelled(list, where) {
  assert.ok(list.length > 0, `${where}: has inputs`);
  for (const c of list) assert.ok(c.labels.length > 0, `${where}: input "${c.name}" has a <label>`);
}

test('accessibility smoke: labels, role="alert", label in name, contrast in both schemes', async () => {
  const name = user('iris');
  const { page } = await device();

  await page.goto(url('/login'));
  assertAllLabelled(await controls(page), '/login');
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await fillLogin(page, user('nobody'), 'no such user password');
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /Invalid username or password\./);
  assertAllLabelled(await controls(page), '/login with an error');
  await expectFieldError(page, 'password', 'Invalid username or password.');

  await page.goto(url('/signup'));
  assertAllLabelled(await controls(page), '/signup');
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill(`${PASSWORD} typo`);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /passwords differ/);
  assertAllLabelled(await controls(page), '/signup with an error');

  await signUp(page, name);
  await page.goto(url('/account/password'));
  assertAllLabelled(await controls(page), '/account/password');
  await page.getByLabel('Current password').fill('this is not it at all');
  await page.getByLabel('New password', { exact: true }).fill('another long passphrase');
  await page.getByLabel('Repeat the new password').fill('another long passphrase');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /current password is wrong/);
  assertAllLabelled(await controls(page), '/account/password with an error');

  // "Your devices" names each sign-out button after its device; the name must still contain
  // the visible text (WCAG 2.5.3 Label in Name), or "click Sign out here" fails for someone
  // using speech input.
  const phone = await device({ userAgent: PHONE_UA });
  await logIn(phone.page, name);
  await page.goto(url('/account/sessions'));
  const buttons = await page.getByRole('button').all();
  assert.ok(buttons.length >= 4, 'sign out, two sign-outs, sign out of all other devices');
  for (const b of buttons) {
    const text = (await b.textContent()).trim();
    const label = (await b.getAttribute('aria-label')) ?? text;
    assert.ok(text, `button "${label}" has visible text`);
    assert.ok(label.toLowerCase().includes(text.toLowerCase()), `"${label}" contains "${text}"`);
  }

  // Errors and confirmations stay readable in both colour schemes (WCAG 1.4.3: 4.5:1).
  const anon = await device();
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    await page.goto(url('/account/sessions?revoked=0'));
    const notice = await contrast(page.getByRole('status'));
    assert.ok(notice >= 4.5, `${colorScheme}: notice contrast ${notice.toFixed(2)}:1`);

    await anon.page.emulateMedia({ colorScheme });
    await anon.page.goto(url('/signup'));
    await anon.page.getByLabel('Username').fill(user('jo'));
    await anon.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await anon.page.getByLabel('Repeat the password').fill(`${PASSWORD}!`);
    await anon.page.getByRole('button', { name: 'Create account' }).click();
    const error = await contrast(anon.page.getByRole('alert'));
    assert.ok(error >= 4.5, `${colorScheme}: error contrast ${error.toFixed(2)}:1`);
  }
});

// A hung browser must not hang CI: fail the whole run instead.
setTimeout(() => fail('timed out after 120 s'), 120_000).unref();

// --- Second factors ----------------------------------------------------------------------
//
// The authenticator app without JavaScript (codes computed here, by RFC 6238 over Node's own
// HMAC-SHA-1, at the server's time), and passkeys with Chromium's virtual authenticator
// (DevTools protocol `WebAuthn` domain): registration, a second factor, a sign-in without
// password, a cloned authenticator's counter, a removed passkey.

/** The server's time in milliseconds (its clock is the test's; see `e2e.rs`). */
async function serverNow() {
  const request = join(CLOCK_DIR, 'now-request');
  writeFileSync(`${request}.tmp`, '');
  renameSync(`${request}.tmp`, request);
  for (let i = 0; i < 100 && existsSync(request); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!existsSync(request), 'the harness answered the time request');
  return Number(readFileSync(join(CLOCK_DIR, 'now'), 'utf8'));
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) for a base32 secret at `ms`. */
function totp(secret, ms) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 1000 / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

async function authLevel(context) {
  const response = await context.request.get(url('/api/session'));
  assert.equal(response.status(), 200, 'signed in');
  return (await response.json()).auth_level;
}

async function signOut(page) {
  await page.goto(url('/'));
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await page.waitForURL((u) => u.pathname === '/login');
}

test('an authenticator app, without JavaScript: set up from its page, then a code at sign-in, once', { skip: !CLOCK_DIR && 'no clock' }, async () => {
  const name = user('totp');
  const { context, page } = await device({ javaScriptEnabled: false });
  await signUp(page, name);
  await page.goto(url('/account/security'));
  assert.equal(await page.locator('script').count(), 1, 'the page links the passkey script');
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  assert.equal(await page.locator('.qr svg').count(), 1, 'a QR code drawn on the server');
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  await page.getByLabel('The six-digit code the app shows now').fill(totp(secret, await serverNow()));
  await page.getByRole('button', { name: 'Turn on' }).click();
  assert.equal(await page.locator('#recovery-codes li').count(), 10, 'ten recovery codes, once');
  assert.equal(await authLevel(context), 'aal1', 'enrolment itself is no step-up');

  // Another browser, also without script: the password, then a code of the next step.
  await advanceServerClock(30);
  const code = totp(secret, await serverNow());
  const other = await device({ javaScriptEnabled: false });
  await other.page.goto(url('/login'));
  await fillLogin(other.page, name, PASSWORD);
  await other.page.waitForURL((u) => u.pathname === '/login/second-factor');
  assert.equal(await sessionCookie(other.context) !== undefined, true, 'a pending cookie');
  assert.equal((await other.context.request.get(url('/api/session'))).status(), 401, 'pending is signed out');
  await other.page.getByLabel('Code', { exact: true }).fill(code);
  await other.page.getByRole('button', { name: 'Continue' }).click();
  await other.page.waitForURL(url('/'));
  await expectHome(other.page, name);
  assert.equal(await authLevel(other.context), 'aal2');

  // The same code again, in a third browser: refused.
  const third = await device({ javaScriptEnabled: false });
  await third.page.goto(url('/login'));
  await fillLogin(third.page, name, PASSWORD);
  await third.page.waitForURL((u) => u.pathname === '/login/second-factor');
  await third.page.getByLabel('Code', { exact: true }).fill(code);
  await third.page.getByRole('button', { name: 'Continue' }).click();
  assert.equal(
    await third.page.getByRole('alert').first().textContent(),
    'That code is not right. Check the app\'s current code and try again.',
  );
  assert.equal((await third.context.request.get(url('/api/session'))).status(), 401);
});

/** A virtual platform authenticator (user verification on) in `page`'s browser. */
async function virtualAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

async function passkeySignIn(page) {
  await page.goto(url('/login'));
  await page.getByRole('button', { name: 'Use a passkey' }).click();
}

test('passkeys: registered on the security page, a second factor, a sign-in on their own, step-up, a clone refused, a removed one refused', { skip: !CLOCK_DIR && 'no clock to move' }, async () => {
  const name = user('passkey');
  const laptop = await device();
  const { cdp, authenticatorId } = await virtualAuthenticator(laptop.context, laptop.page);
  await signUp(laptop.page, name);

  // Registration: the first factor comes with recovery codes.
  await laptop.page.goto(url('/account/security'));
  await laptop.page.getByLabel('Name of the new passkey').fill('Laptop');
  await laptop.page.getByRole('button', { name: 'Add a passkey' }).click();
  await laptop.page.locator('#recovery-codes').waitFor();
  assert.equal(await laptop.page.locator('#recovery-codes li').count(), 10);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, 'one credential on the authenticator');
  assert.equal(credentials[0].isResidentCredential, true, 'discoverable, for passkey_login');
  await laptop.page.goto(url('/account/security'));
  assert.match(await laptop.page.locator('ul.passkeys').textContent(), /Laptop/);

  // Renamed without script's help (a plain form).
  await laptop.page.getByLabel('New name').fill('Work laptop');
  await laptop.page.getByRole('button', { name: 'Rename' }).click();
  await laptop.page.waitForURL(url('/account/security?done=passkey-renamed'));
  assert.match(await laptop.page.locator('ul.passkeys').textContent(), /Work laptop/);

  // A second factor after the password.
  await signOut(laptop.page);
  await fillLogin(laptop.page, name, PASSWORD);
  await laptop.page.waitForURL((u) => u.pathname === '/login/second-factor');
  await laptop.page.getByRole('button', { name: 'Use a passkey' }).click();
  await laptop.page.waitForURL(url('/'));
  await expectHome(laptop.page, name);
  assert.equal(await authLevel(laptop.context), 'aal2');

  // On its own, without the password (passkey_login = true).
  await signOut(laptop.page);
  await passkeySignIn(laptop.page);
  await laptop.page.waitForURL(url('/'));
  await expectHome(laptop.page, name);
  assert.equal(await authLevel(laptop.context), 'aal2', 'a passkey verifies its user: two factors');

  // A copy of the credential on another authenticator, its signature counter back at 0:
  // the library reports a possible clone, and the sign-in is refused.
  const copy = await device();
  const other = await virtualAuthenticator(copy.context, copy.page);
  const [original] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  assert.ok(original.signCount >= 2, `the original has signed twice: ${original.signCount}`);
  await other.cdp.send('WebAuthn.addCredential', {
    authenticatorId: other.authenticatorId,
    credential: { ...original, signCount: 0 },
  });
  await passkeySignIn(copy.page);
  await copy.page.locator('#form-error').waitFor();
  assert.match(await copy.page.locator('#form-error').textContent(), /signature counter went backwards/);
  assert.equal(await sessionCookie(copy.context), undefined, 'no session for the copy');

  // Removing it needs a recent second factor: a quarter of an hour on, it asks for a step-up,
  // given with the passkey; then it is removed, and signs no one in.
  await advanceServerClock(16 * 60);
  await laptop.page.goto(url('/account/security'));
  await laptop.page.getByRole('button', { name: 'Remove Work laptop' }).click();
  await laptop.page.waitForURL((u) => u.pathname === '/step-up');
  await laptop.page.getByRole('button', { name: 'Use a passkey' }).click();
  await laptop.page.waitForURL(url('/account/security'));
  await laptop.page.getByRole('button', { name: 'Remove Work laptop' }).click();
  await laptop.page.waitForURL(url('/account/security?done=passkey-removed'));
  assert.equal(await laptop.page.locator('ul.passkeys').count(), 0, 'no passkey listed');
  await signOut(laptop.page);
  await passkeySignIn(laptop.page);
  await laptop.page.locator('#form-error').waitFor();
  assert.match(await laptop.page.locator('#form-error').textContent(), /not registered here/);
  assert.equal(await sessionCookie(laptop.context), undefined);
});
