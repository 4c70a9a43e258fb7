// Debian's Chromium through playwright-core, as every browser test and benchmark here
// starts it (the e2e tests, the npm consumer, the edge browser test). Never a downloaded
// browser; the flags are the ones that work on these machines (TOOLCHAIN.md).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ESM ignores NODE_PATH; require honours it (scripts/env.sh points it at the pinned tools).
export const { chromium } = createRequire(import.meta.url)('playwright-core');

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * A browser of its own (a persistent context in a fresh profile directory): two of them
 * share nothing (no BroadcastChannel, no storage); two pages of one share both.
 * `options` go to launchPersistentContext. Returns { context, close }; close removes the
 * profile.
 */
export async function launchChromium(name = 'browser', options = {}) {
  const dir = mkdtempSync(join(tmpdir(), `recached-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    timeout: 30_000,
    ...options,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
