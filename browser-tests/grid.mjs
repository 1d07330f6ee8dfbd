// A real local grid for browser tests: `lafs demo` (introducer, storage nodes, gateway serving the
// built web app) in a temporary directory on an ephemeral port, plus `lafs put/get --node`.
//
// The `lafs` binary is $LAFS_BIN, or built here with cargo (debug profile, the usual
// CARGO_TARGET_DIR) on first use.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');

let bin = process.env.LAFS_BIN;

/** Path of the `lafs` binary, building it if needed (cargo is incremental: fast when fresh). */
export function lafsBin() {
  if (bin) return bin;
  const out = execFileSync(
    'cargo',
    ['build', '--locked', '-p', 'lafs-cli', '--bin', 'lafs', '--message-format=json'],
    { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 },
  );
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target?.name === 'lafs' && msg.executable) {
      bin = msg.executable;
    }
  }
  if (!bin) throw new Error('cargo build did not report the lafs executable');
  return bin;
}

/**
 * Starts `lafs demo` and resolves once its gateway is listening:
 * `{ url, introducer, dir, put(bytes), get(cap), cli(command, ...args), shareFiles(), read(path),
 * write(path, bytes), stop() }`.
 */
export async function startGrid({ storageNodes = 10 } = {}) {
  const exe = lafsBin();
  const dir = mkdtempSync(join(tmpdir(), 'lafs-browser-'));
  const web = process.env.DIST_DIR ?? resolve(repo, 'web/dist');
  const child = spawn(
    exe,
    ['demo', '--dir', dir, '--port', '0', '--storage-nodes', String(storageNodes), '--web', web],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`lafs demo did not start in 60 s:\n${log}`)), 60_000);
    const onData = (d) => {
      log += d.toString();
      const m = log.match(/web UI:\s+(http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        res(m[1].replace(/\/$/, ''));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => { log += d.toString(); });
    child.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`lafs demo exited with ${code}:\n${log}`));
    });
  });
  // The introducer's address, as the demo prints it (ws://…/v1/introducer).
  const introducer = log.match(/introducer\s+(ws:\/\/\S+)/)?.[1] ?? null;
  const client = join(dir, 'client');
  const run = (args, input) =>
    execFileSync(exe, args, { input, maxBuffer: 256 << 20, stdio: ['pipe', 'pipe', 'pipe'] });
  return {
    url,
    introducer,
    dir,
    /** Uploads bytes with `lafs put --node` and returns the readcap (or literal cap). */
    put(bytes) {
      const file = join(dir, `upload-${Date.now()}-${Math.random().toString(36).slice(2)}`);
      writeFileSync(file, bytes);
      return run(['put', '--node', client, file]).toString().trim();
    },
    /** Downloads a cap with `lafs get --node`. */
    get(cap) {
      return run(['get', '--node', client, cap]);
    },
    /** Runs `lafs <command> --node <client> ...args` and returns its standard output. */
    cli(command, ...args) {
      return run([command, '--node', client, ...args]);
    },
    /** Every share file of the grid (paths), for tampering. */
    shareFiles() {
      const files = [];
      const walk = (d) => {
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          if (statSync(p).isDirectory()) walk(p);
          else files.push(p);
        }
      };
      for (const node of readdirSync(dir).filter((n) => n.startsWith('storage-'))) {
        walk(join(dir, node, 'storage'));
      }
      return files;
    },
    read: (p) => readFileSync(p),
    write: (p, b) => writeFileSync(p, b),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
