/**
 * `vmkeep repo copy` end to end through the CLI entry point (in process): an encrypted repository copied into a
 * differently keyed one, byte-exact restore from the copy, and a second run that sends nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCliInProcess } from './peers/cli';
import { makeTempDir } from './peers/process';

const MIB = 1024 * 1024;

interface CopyJson {
  copied: string[];
  skipped: string[];
  chunksTransferred: number;
  chunksPresent: number;
}

describe('vmkeep repo copy', () => {
  let home: string;
  const run = async (args: string[], env: Record<string, string>) => {
    const r = await runCliInProcess([...args, '--json'], { home, env });
    if (r.code !== 0) throw new Error(`vmkeep ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  beforeAll(async () => {
    home = makeTempDir('vmkeep-repo-copy-');
  });
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  it('copies points between differently keyed repositories, resumably and byte-exactly', async () => {
    const src = { VMKEEP_REPO: path.join(home, 'src'), VMKEEP_PASSPHRASE: 'source secret' };
    const dst = { VMKEEP_REPO: path.join(home, 'dst'), VMKEEP_PASSPHRASE: 'target secret' };
    await run(['repo', 'init', '--encrypt', '--chunk-size', '256K'], src);
    await run(['repo', 'init', '--encrypt', '--chunk-size', '256K'], dst);
    const image = path.join(home, 'disk.raw');
    const same = randomBytes(MIB);
    fs.writeFileSync(image, Buffer.concat([randomBytes(MIB), Buffer.alloc(MIB), same, same]));
    const point = (await run(['repo', 'backup-image', image], src)).point as string;

    const withTarget = { ...src, VMKEEP_TARGET_PASSPHRASE: dst.VMKEEP_PASSPHRASE };
    const first = (await run(['repo', 'copy', '--to', dst.VMKEEP_REPO], withTarget)) as unknown as CopyJson;
    // 1 MiB random (4 chunks) + 1 MiB repeated twice (4 distinct chunks); the zero MiB is not stored.
    expect(first).toMatchObject({ copied: [point], skipped: [], chunksTransferred: 8 });
    const second = (await run(['repo', 'copy', '--to', dst.VMKEEP_REPO, point], withTarget)) as unknown as CopyJson;
    expect(second).toMatchObject({ copied: [], skipped: [point], chunksTransferred: 0 });

    const out = path.join(home, 'restored.raw');
    await run(['repo', 'restore', point, '--output', out], dst);
    const digest = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    expect(digest(out)).toBe(digest(image));

    const wrong = await runCliInProcess(['repo', 'copy', '--to', dst.VMKEEP_REPO], {
      home,
      env: { ...src, VMKEEP_TARGET_PASSPHRASE: 'not it' },
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('wrong passphrase');
    expect(wrong.stderr).not.toContain('not it');
  });
});
