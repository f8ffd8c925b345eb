// Runs e2e/console.mjs against the mock backend, playing the Rust test's part: seeds the metric
// and the flag, answers `traffic` once the script has started the experiment. `npm run e2e:mock`
// (after `npm run build`).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockBackend } from './mock-backend.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
if (!existsSync(join(dist, 'index.html'))) {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(2);
}
const adminKey = 'ck_admin_e2e_mock_secret';
const screenshots = process.env.SCREENSHOTS ?? join(root, 'e2e-screenshots');
mkdirSync(screenshots, { recursive: true });

const mock = await startMockBackend({ dist, adminKey });
mock.seed('dev', 'metric', { key: 'purchase', event: 'purchase', aggregation: 'conversion' });
mock.seed('dev', 'flag', {
  key: 'kill-switch-demo',
  type: 'boolean',
  enabled: true,
  variations: [
    { key: 'on', value: true },
    { key: 'off', value: false },
  ],
  off_variation: 'off',
  default: { variation: 'on' },
});

const child = spawn(process.execPath, [join(root, 'e2e', 'console.mjs')], {
  env: { ...process.env, CONSOLE_URL: mock.url, ADMIN_KEY: adminKey, ENVIRONMENT: 'dev', SCREENSHOTS: screenshots },
  stdio: ['pipe', 'pipe', 'inherit'],
});
for await (const line of createInterface({ input: child.stdout })) {
  console.log(line);
  const msg = JSON.parse(line);
  if (msg.step === 'started') {
    mock.traffic(msg.experiment);
    child.stdin.write('traffic\n');
  }
}
const code = await new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', r)));
await mock.close();
process.exit(code ?? 1);
