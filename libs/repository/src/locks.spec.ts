import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { RepositoryLockedError } from './errors';
import { ExclusiveLock, StaleLock } from './locks';
import { tempDir } from './testing/test-disks';

describe('ExclusiveLock', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('locks')));
  afterEach(() => tmp.cleanup());

  it('admits one holder; a second gets RepositoryLockedError naming the first; release frees it', async () => {
    const lock = new ExclusiveLock(path.join(tmp.dir, 'locks'));
    const held = await lock.acquire('gc');
    const err = await lock.acquire('prune').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RepositoryLockedError);
    expect((err as RepositoryLockedError).holder).toMatchObject({ operation: 'gc', host: hostname(), pid: process.pid });
    expect((err as Error).message).toMatch(new RegExp(`locked by gc \\(host ${hostname()}, pid ${process.pid}, since `));
    await held.release();
    const next = await lock.acquire('prune');
    await next.assertHeld();
    await next.release();
    expect(await lock.holder()).toBeUndefined();
  });

  it('takes over the lock of a dead process on this host, and one not refreshed in time', async () => {
    const dir = path.join(tmp.dir, 'locks');
    const lock = new ExclusiveLock(dir);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const write = (holder: object) => fs.writeFile(path.join(dir, 'exclusive.json'), JSON.stringify(holder));
    await fs.mkdir(dir, { recursive: true });
    await write({ operation: 'gc', host: hostname(), pid: Number(dead), startedAt: 'then', token: 'a' });
    const seen: StaleLock[] = [];
    const held = await lock.acquire('prune', { onStale: (s) => seen.push(s) });
    expect(seen).toEqual([{ operation: 'gc', host: hostname(), pid: Number(dead), startedAt: 'then', reason: `pid ${dead} is not running on host ${hostname()}` }]);
    await held.release();

    // Another host's lock: only its age counts.
    await write({ operation: 'gc', host: 'elsewhere', pid: 1, startedAt: 'then', token: 'b' });
    await expect(lock.acquire('prune', { staleMs: 60_000 })).rejects.toBeInstanceOf(RepositoryLockedError);
    const old = new Date(Date.now() - 130_000); // clear of the 120 s boundary where the age switches to minutes
    await fs.utimes(path.join(dir, 'exclusive.json'), old, old);
    seen.length = 0;
    const taken = await lock.acquire('prune', { staleMs: 60_000, onStale: (s) => seen.push(s) });
    expect(seen[0]).toMatchObject({ operation: 'gc', host: 'elsewhere', reason: expect.stringMatching(/^not refreshed for 2 min$/) });
    await taken.assertHeld();
    await taken.release();
  });
});
