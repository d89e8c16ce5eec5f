// SPDX-License-Identifier: Apache-2.0
// The web console driven in Debian's headless chromium (playwright-core) against the real stack
// run-console-test.sh starts. Each step is a subtest; a screenshot of every page goes to FOTA_SHOTS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through tests/browser/run-console-test.sh`);
  return v;
};
const url = env('FOTA_CONSOLE_URL');
const origin = new URL(url).origin;
const admin = env('FOTA_ADMIN_TOKEN');
const viewer = env('FOTA_VIEWER_TOKEN');
const bundle = env('FOTA_BUNDLE');
const failing = env('FOTA_FAILING_DEVICE');
const devices = Number(env('FOTA_DEVICES'));
const shots = env('FOTA_SHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

async function signIn(page, token) {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Fleet', level: 1 }).waitFor();
}
const stateOf = (page) => page.getByTestId('rollout-state');
async function act(page, action) {
  await page.getByRole('button', { name: action, exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: action, exact: true }).click();
}

test('the public API behind the console: whoami, fleet summary, stream tickets and the event stream', async () => {
  const auth = { Authorization: `Bearer ${admin}` };
  // The console's files are open (it signs in with a token); anything else under /console/ is a
  // JSON 404 like every other error, and every file comes with the content security policy.
  const index = await fetch(`${origin}/console/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-security-policy'), /default-src 'self'/);
  const missing = await fetch(`${origin}/console/nothing.js`);
  assert.equal(missing.status, 404);
  assert.match((await missing.json()).error.message, /no such console file/);
  assert.equal((await fetch(`${origin}/api/v1/whoami`)).status, 401);
  const me = await (await fetch(`${origin}/api/v1/whoami`, { headers: auth })).json();
  assert.deepEqual(me, { actor: 'token:admin', role: 'admin' });
  const summary = await (await fetch(`${origin}/api/v1/fleet/summary`, { headers: auth })).json();
  assert.equal(summary.devices, devices);
  assert.equal(summary.by_hardware['console-gw'], devices);
  // Without credentials nothing; a ticket is good once; a made-up ticket is refused.
  assert.equal((await fetch(`${origin}/api/v1/events/stream`)).status, 401);
  assert.equal((await fetch(`${origin}/api/v1/events/stream?ticket=00`)).status, 401);
  const ticket = await (await fetch(`${origin}/api/v1/events/stream-tickets`, { method: 'POST', headers: auth })).json();
  assert.match(ticket.ticket, /^[0-9a-f]{48}$/);
  const ctl = new AbortController();
  const res = await fetch(`${origin}${ticket.url}`, { signal: ctl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body.getReader();
  let text = '';
  while (!text.includes('event: hello')) text += new TextDecoder().decode((await reader.read()).value);
  assert.match(text, /event: fleet\ndata: \{.*"devices":6/);
  ctl.abort();
  assert.equal((await fetch(`${origin}${ticket.url}`)).status, 401, 'a used ticket is refused');
  // A stream opened with the header needs no ticket (curl, scripts).
  const ctl2 = new AbortController();
  const res2 = await fetch(`${origin}/api/v1/events/stream?interval_ms=200`, { headers: auth, signal: ctl2.signal });
  assert.equal(res2.status, 200);
  ctl2.abort();
  const bad = await fetch(`${origin}/api/v1/events/stream?interval_ms=5`, { headers: auth });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error.message, /interval_ms/);
});

test('event streams are bounded: clients that never read do not block the API, past 16 they are refused', async () => {
  const auth = { Authorization: `Bearer ${admin}` };
  const held = [];
  try {
    // Streams whose clients never read a byte, at the fastest interval, until the orchestrator
    // refuses one: at most 16 are open (the previous test's closed ones may still count until
    // the server's next write to them).
    let refused = null;
    for (let i = 0; i < 20 && !refused; i++) {
      const ctl = new AbortController();
      const res = await fetch(`${origin}/api/v1/events/stream?interval_ms=100`, { headers: auth, signal: ctl.signal });
      if (res.status === 200) held.push(ctl);
      else refused = res;
    }
    assert.ok(refused, 'the 17th stream is refused');
    assert.ok(held.length >= 14 && held.length <= 16, `${held.length} streams open`);
    assert.equal(refused.status, 503);
    assert.ok(refused.headers.get('retry-after'));
    assert.match((await refused.json()).error.message, /event streams/);
    // Meanwhile the API answers as usual.
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${origin}/api/v1/fleet/summary`, { headers: auth });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).devices, devices);
    }
  } finally {
    for (const ctl of held) ctl.abort();
  }
  // Closed streams free their places (the server notices at its next write).
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const ctl = new AbortController();
    const res = await fetch(`${origin}/api/v1/events/stream`, { headers: auth, signal: ctl.signal });
    status = res.status;
    ctl.abort();
  }
  assert.equal(status, 200);
});

test('an operator runs a rollout from the console and watches it live', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.FOTA_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/40[19]|Failed to load resource/.test(m.text())) errors.push(m.text()); });
  let rollout = '';
  try {
    await t.test('a wrong token is refused with the reason', async () => {
      await page.goto(url);
      await shot(page, 'login');
      await page.getByLabel('API token').fill('not-a-token');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').filter({ hasText: 'invalid API token' }).waitFor();
    });
    await t.test('signs in and sees the fleet', async () => {
      await signIn(page, admin);
      await page.getByTestId('device-count').filter({ hasText: String(devices) }).waitFor();
      assert.doesNotMatch(await page.locator('main').innerText(), /null|undefined|NaN/);
      await page.getByRole('cell', { name: failing }).waitFor();
      await page.locator('#live.on').waitFor();
      await shot(page, 'fleet');
      // Server-side filters: one device matches its id.
      await page.getByLabel('Device id contains').fill(failing);
      await page.getByRole('button', { name: 'Apply filters' }).click();
      await page.getByText('1 devices on page 1 (last page)').waitFor();
    });
    await t.test('uploads the signed bundle with a progress bar', async () => {
      await page.getByRole('link', { name: 'Artifacts' }).click();
      await page.getByLabel('Signed bundle').setInputFiles(bundle);
      await page.getByRole('button', { name: 'Upload' }).click();
      await page.locator('#artifact-status').filter({ hasText: 'Uploaded 2.0.0' }).waitFor();
      await page.getByText('Ed25519 signature verified').waitFor();
      await shot(page, 'artifacts');
    });
    await t.test('creates a rollout from YAML', async () => {
      const artifact = await page.locator('.mono').first().textContent();
      await page.getByRole('link', { name: 'Rollouts' }).click();
      await page.getByText('New rollout').click();
      await page.getByLabel(/Rollout spec/).fill(`name: console-2.0.0\nartifact: ${artifact}\ntarget: {hardware: [console-gw]}\n` +
        'retries: {max: 1, backoff: 1s}\nmax_concurrent: 2\nwaves:\n' +
        '  - {size: 2, success_ratio: 40%, failure_threshold: 60%, soak: 2s}\n' +
        '  - {size: 100%, success_ratio: 40%, failure_threshold: 60%}\non_breach: pause\n');
      await shot(page, 'rollout-new');
      await page.getByRole('button', { name: 'Create from YAML' }).click();
      await page.getByRole('heading', { name: 'Rollout console-2.0.0' }).waitFor();
      await stateOf(page).filter({ hasText: 'created' }).waitFor();
      rollout = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
      assert.ok(rollout);
    });
    await t.test('starts, pauses and resumes it with confirmation', async () => {
      await page.evaluate(() => { window.__sameDocument = true; });
      await act(page, 'Start');
      await stateOf(page).filter({ hasText: 'running' }).waitFor();
      await act(page, 'Pause');
      await stateOf(page).filter({ hasText: 'paused' }).waitFor();
      await shot(page, 'rollout-paused');
      // Cancel in the dialog does nothing.
      await page.getByRole('button', { name: 'Resume', exact: true }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      await stateOf(page).filter({ hasText: 'paused' }).waitFor();
      await act(page, 'Resume');
      await stateOf(page).filter({ hasText: 'running' }).waitFor();
    });
    await t.test('watches it progress live to completion', async () => {
      // The page fetches nothing on a timer: every change below comes through the event stream.
      await page.getByText(/[1-9] of 6 succeeded/).waitFor({ timeout: 120_000 });
      await shot(page, 'rollout-running');
      await stateOf(page).filter({ hasText: 'completed' }).waitFor({ timeout: 180_000 });
      await page.getByText('5 of 6 succeeded, 1 failed').waitFor();
      assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
      assert.match(await page.getByTestId('eta').textContent(), /finished/);
    });
    await t.test("shows the failing device's reason and opens its logs", async () => {
      const row = page.getByRole('row').filter({ hasText: failing });
      await row.waitFor();
      const reason = (await row.locator('.error').textContent()).trim();
      assert.ok(reason.length > 3 && reason !== '—', `a reason is shown: '${reason}'`);
      await page.locator('svg[role=img]').waitFor();
      await shot(page, 'rollout');
      await row.getByRole('link', { name: failing }).click();
      await page.getByRole('heading', { name: `Device ${failing}` }).waitFor();
      await page.getByTestId('device-error').waitFor();
      await page.locator('#logs div:not(.muted)').first().waitFor({ timeout: 60_000 });
      await page.getByRole('cell', { name: 'failed' }).first().waitFor();
      assert.doesNotMatch(await page.locator('main').innerText(), /null|undefined|NaN/);
      await shot(page, 'device');
    });
    await t.test('creates a rollout from the form fields and aborts it', async () => {
      await page.getByRole('link', { name: 'Rollouts' }).click();
      await page.getByText('New rollout').click();
      await page.getByLabel('Name').fill('console-fields');
      await page.getByLabel('Hardware (comma separated)').fill('console-gw');
      await page.getByLabel('Wave sizes').fill('1, 100%');
      await page.getByRole('button', { name: 'Create rollout' }).click();
      await page.getByRole('heading', { name: 'Rollout console-fields' }).waitFor();
      await stateOf(page).filter({ hasText: 'created' }).waitFor();
      await act(page, 'Abort');
      await stateOf(page).filter({ hasText: 'aborted' }).waitFor();
      await page.getByRole('link', { name: '← Rollouts' }).click();
      await page.getByRole('row').filter({ hasText: 'console-fields' }).filter({ hasText: 'aborted' }).waitFor();
      await page.getByRole('row').filter({ hasText: 'console-2.0.0' }).filter({ hasText: 'completed' }).waitFor();
      await shot(page, 'rollouts');
    });
    await t.test('verifies the audit log', async () => {
      await page.getByRole('link', { name: 'Audit log' }).click();
      await page.getByTestId('audit-verification').filter({ hasText: 'Verified' }).waitFor();
      await page.getByRole('cell', { name: 'rollout.pause' }).first().waitFor().catch(() => {});
      await shot(page, 'audit');
    });
    await t.test('refuses to delete an artifact a rollout uses, and says why', async () => {
      await page.getByRole('link', { name: 'Artifacts' }).click();
      await page.getByRole('button', { name: 'Delete 2.0.0' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
      await page.locator('#artifact-status').filter({ hasText: 'Not deleted' }).waitFor();
    });
    await t.test('reads on a phone', async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      await page.getByRole('link', { name: 'Fleet' }).click();
      await page.getByTestId('device-count').waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `no sideways scrolling of the page (${overflow} px)`);
      await shot(page, 'fleet-phone');
      await page.goto(`${url}#/rollouts/${encodeURIComponent(rollout)}`);
      await stateOf(page).waitFor();
      await shot(page, 'rollout-phone');
    });
    await t.test('a viewer sees no actions', async () => {
      const other = await browser.newContext();
      const p = await other.newPage();
      await signIn(p, viewer);
      await p.goto(`${url}#/rollouts/${encodeURIComponent(rollout)}`);
      await stateOf(p).waitFor();
      assert.equal(await p.getByRole('button', { name: 'Rollback', exact: true }).count(), 0);
      assert.doesNotMatch(await p.locator('main').innerText(), /null|undefined|NaN/);
      await p.getByRole('link', { name: 'Artifacts' }).click();
      await p.getByRole('heading', { name: 'Artifacts' }).waitFor();
      assert.equal(await p.getByLabel('Signed bundle').count(), 0);
      assert.equal(await p.getByRole('button', { name: /^Delete/ }).count(), 0);
      await other.close();
    });
    await t.test('the keyboard reaches every navigation link', async () => {
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.goto(`${url}#/fleet`);
      await page.getByTestId('device-count').waitFor();
      // From the first element of the page (the skip link), Tab reaches every section and Enter opens it.
      await page.getByRole('link', { name: 'Skip to content' }).focus();
      const seen = new Set();
      for (let i = 0; i < 8; i++) {
        await page.keyboard.press('Tab');
        const name = await page.evaluate(() => document.activeElement?.textContent?.trim());
        seen.add(name);
        if (name === 'Rollouts') break;
      }
      for (const name of ['Fleet', 'Rollouts']) assert.ok(seen.has(name), `${name} by Tab: ${[...seen]}`);
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.textContent?.trim()), 'Audit log');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
      // The new page's heading has the focus, so a screen reader announces it.
      assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H1');
    });
    assert.deepEqual(errors, [], 'no script errors in the page');
  } finally {
    await browser.close();
  }
});
