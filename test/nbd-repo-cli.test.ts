// `vmkeep repo nbd` end to end: the compiled CLI serves a restore point of an encrypted repository folder over
// NBD without the server; real clients (nbdinfo, qemu-img compare, qemu-io) read the exact bytes, writes land in an
// overlay in a temp folder that is gone after SIGTERM, and the repository still restores the original bytes.
// Also `repo restore-image POINT OUT`, the spelling of issue 4, next to the older `repo restore --output`.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CLI_BIN, ensureBuilt, vmkeep } from './peers/appliance';
import { makeTempDir, requireBinary } from './peers/process';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const PASS = 'nbd from the repository';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Served {
  child: ChildProcess;
  info: { url: string; point: string; disk: string; size: number; writable: boolean; overlayDir: string | null };
  stderr: () => string;
  /** SIGTERM (or `signal`), resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

describe('vmkeep repo nbd (NBD straight from a repository)', () => {
  let home: string;
  let tmp: string;
  let repo: string;
  let pointId: string;
  const data = Buffer.alloc(5 * MiB);
  const env = () => ({ VMKEEP_REPO: repo, VMKEEP_PASSPHRASE: PASS, TMPDIR: tmp });
  const running: Served[] = [];

  async function serve(args: string[]): Promise<Served> {
    const child = spawn(process.execPath, [CLI_BIN, 'repo', 'nbd', ...args, '--json'], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, ...env() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const info = await new Promise<Served['info']>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.trimEnd().endsWith('}')) resolve(JSON.parse(out) as Served['info']);
      });
      void exited.then((code) => reject(new Error(`repo nbd exited (${code}) before serving: ${err}`)));
    });
    const served: Served = {
      child,
      info,
      stderr: () => err,
      stop: async (signal = 'SIGTERM') => {
        child.kill(signal);
        return exited;
      },
    };
    running.push(served);
    return served;
  }

  beforeAll(async () => {
    for (const bin of ['nbdinfo', 'qemu-img', 'qemu-io']) requireBinary(bin);
    await ensureBuilt();
    home = makeTempDir('vmkeep-repo-nbd-');
    tmp = path.join(home, 'tmp');
    fs.mkdirSync(tmp);
    repo = path.join(home, 'repo');
    for (let i = 0; i < 2 * MiB; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
    data.fill(0x5a, 4 * MiB, 5 * MiB); // MiB 2-4 stay zero: holes
    fs.writeFileSync(path.join(home, 'disk.raw'), data);
    const init = await vmkeep(['repo', 'init', '--encrypt', '--chunk-size', '256K'], { home, env: env() });
    expect(init.code).toBe(0);
    const backup = await vmkeep(['repo', 'backup-image', path.join(home, 'disk.raw'), '--json'], { home, env: env() });
    expect(backup.code).toBe(0);
    pointId = (JSON.parse(backup.stdout) as { point: string }).point;
  });

  afterAll(async () => {
    for (const s of running) if (s.child.exitCode === null) await s.stop('SIGKILL');
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('serves a point read-only: exact bytes, holes where zero, writes refused; SIGINT ends it cleanly', async () => {
    const s = await serve([pointId, '--listen', '127.0.0.1:0']);
    expect(s.info).toMatchObject({ point: pointId, disk: 'disk-0', size: data.length, writable: false, overlayDir: null });
    expect(s.info.url).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{32}$/);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(home, 'disk.raw'), s.info.url]);
    const map = JSON.parse((await run('nbdinfo', ['--map', '--json', s.info.url])).stdout) as Array<{ offset: number; length: number; type: number }>;
    expect(map.some((e) => e.offset <= 2 * MiB && e.offset + e.length >= 4 * MiB && (e.type & 1) === 1)).toBe(true);
    await expect(run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', s.info.url])).rejects.toBeDefined();
    // The export name is the secret: an unknown name is refused.
    await expect(run('nbdinfo', [s.info.url.replace(/\/[^/]+$/, '/guess')])).rejects.toBeDefined();
    expect(await s.stop('SIGINT')).toBe(0);
  });

  it('keeps writes in a temp overlay that is removed on SIGTERM; the repository is untouched', async () => {
    const s = await serve([pointId, '--disk', 'disk-0', '--listen', '127.0.0.1:0', '--writable']);
    expect(s.info.writable).toBe(true);
    expect(path.dirname(s.info.overlayDir!)).toBe(tmp);
    expect(fs.existsSync(s.info.overlayDir!)).toBe(true);
    await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 ${3 * MiB} 65536`, '-c', 'flush', s.info.url]);
    const expected = Buffer.from(data);
    expected.fill(0x33, 3 * MiB, 3 * MiB + 65536);
    const merged = path.join(home, 'merged.raw');
    fs.writeFileSync(path.join(home, 'expected.raw'), expected);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.info.url, merged]);
    expect(sha256(fs.readFileSync(merged))).toBe(sha256(expected));
    expect(await s.stop()).toBe(0);
    expect(fs.readdirSync(tmp)).toEqual([]);

    const out = path.join(home, 'again.raw');
    const restored = await vmkeep(['repo', 'restore-image', pointId, out], { home, env: env() });
    expect(restored.code).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(sha256(data));
    // The older spelling still works.
    const old = await vmkeep(['repo', 'restore', pointId, '--output', out], { home, env: env() });
    expect(old.code).toBe(0);
  });

  it('refuses bad input with one clear line', async () => {
    const cases: Array<[string[], string]> = [
      [[pointId, '--listen', 'localhost'], '--listen must be HOST:PORT'],
      [[pointId, '--disk', 'disk-9', '--listen', '127.0.0.1:0'], 'has no disk "disk-9" (it has: disk-0)'],
      [[pointId, '--listen', '127.0.0.1:0', '--allow', 'not-an-ip'], 'allow-list entry "not-an-ip"'],
    ];
    for (const [args, message] of cases) {
      const r = await vmkeep(['repo', 'nbd', ...args], { home, env: env() });
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.stringContaining(message) as string });
    }
    const noOut = await vmkeep(['repo', 'restore-image', pointId], { home, env: env() });
    expect(noOut.code).toBe(1);
    expect(noOut.stderr).toContain('give the output file');
  });
});
