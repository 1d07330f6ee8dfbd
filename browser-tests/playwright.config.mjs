// Browser tests of the web app in headless Chromium: Debian's /usr/bin/chromium (scripts/install-tools.sh
// installs it); Playwright never downloads a browser here. Build the app first:
//   (cd web && trunk build --release) && (cd browser-tests && npx playwright test)
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: './tests',
  globalSetup: './global-setup.mjs',
  reporter: [['list']],
  timeout: 30_000,
  expect: { timeout: 10_000 },
  workers: 2,
  forbidOnly: !!process.env.CI,
  use: {
    browserName: 'chromium',
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    },
  },
});
