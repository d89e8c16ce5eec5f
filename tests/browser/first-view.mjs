// SPDX-License-Identifier: Apache-2.0
// Times the console's first view (signed in: the fleet summary and the first page of devices
// rendered) in Debian's headless chromium: node first-view.mjs URL TOKEN DEVICES RUNS. One
// warm-up load, then RUNS loads in fresh browser contexts (no cache); prints the median and worst.
import { chromium } from 'playwright-core';

const [url, token, devices, runs] = process.argv.slice(2);
if (!url || !token || !devices || !runs) {
  console.error('usage: node first-view.mjs URL TOKEN DEVICES RUNS');
  process.exit(2);
}
const browser = await chromium.launch({ executablePath: process.env.FOTA_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const times = [];
try {
  for (let i = 0; i <= Number(runs); i++) {
    const context = await browser.newContext();
    await context.addInitScript((t) => sessionStorage.setItem('fota.console.token', t), token);
    const page = await context.newPage();
    // FOTA_FIRST_VIEW_DEBUG=1: what each request cost (stderr), to see where the time goes.
    if (process.env.FOTA_FIRST_VIEW_DEBUG) {
      page.on('requestfinished', (r) => {
        const t = r.timing();
        console.error(`${new URL(r.url()).pathname}${new URL(r.url()).search}: start ${t.startTime.toFixed(0)}, response ${(t.responseEnd).toFixed(0)} ms`);
      });
    }
    const t0 = performance.now();
    await page.goto(url);
    await page.getByTestId('device-count').filter({ hasText: Number(devices).toLocaleString('en-US') }).waitFor({ timeout: 30_000 });
    await page.locator('#devices table').waitFor({ timeout: 30_000 });
    if (Number(devices) > 0) await page.locator('#devices tbody tr a').first().waitFor({ timeout: 30_000 });
    const ms = performance.now() - t0;
    if (i > 0) times.push(ms);
    await context.close();
  }
} finally {
  await browser.close();
}
times.sort((a, b) => a - b);
console.log(`first view: median ${times[Math.floor(times.length / 2)].toFixed(1)} ms, max ${times.at(-1).toFixed(1)} ms`);
