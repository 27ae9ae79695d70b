import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { normalizeGuestPath, sanitizeEntryName, GuestPathError } from './paths';
import { BrowseSessions } from './sessions';
import { untar, UntarError } from './untar';
import type { FileBrowser } from './browser';

describe('normalizeGuestPath', () => {
  it.each([
    [undefined, '/'],
    ['', '/'],
    ['a/b', '/a/b'],
    ['/a//b/./c/', '/a/b/c'],
    ['/a/b/../c', '/a/c'],
    ['/a/..', '/'],
  ])('%j → %j', (input, out) => expect(normalizeGuestPath(input)).toBe(out));

  it.each(['..', '/..', '/a/../../b', 'x\0y'])('refuses %j', (input) => {
    expect(() => normalizeGuestPath(input)).toThrow(GuestPathError);
  });
});

describe('sanitizeEntryName', () => {
  it.each([
    ['.', '_.'],
    ['..', '_..'],
    ['', '_'],
    ['a\\b', 'a_b'],
    ['tab\there', 'tab_here'],
    ['CON', '_CON'],
    ['lpt1.txt', '_lpt1.txt'],
    ['bad\ud800name', 'bad\ufffdname'],
    ['ünïcødé ✓', 'ünïcødé ✓'],
  ])('%j → %j', (input, out) => expect(sanitizeEntryName(input)).toBe(out));
});

/** A ustar header block for a hand-made (hostile) archive. */
function header(name: string, type: string, size = 0, link = ''): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b.write('        ', 148, 'latin1');
  b.write(type, 156, 'latin1');
  b.write(link, 157, 'utf8');
  b.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}
const body = (text: string) => Buffer.concat([Buffer.from(text), Buffer.alloc(512 - text.length)]);
const end = Buffer.alloc(1024);

async function* chunks(b: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += 333) yield b.subarray(i, i + 333);
}

describe('untar', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-untar-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('unpacks folders, files and symlinks (split across reads)', async () => {
    const tar = Buffer.concat([header('top/', '5'), header('top/a.txt', '0', 5), body('hello'), header('top/l', '2', 0, 'a.txt'), end]);
    const out = path.join(dir, 'out');
    const r = await untar(chunks(tar), out);
    expect(r).toMatchObject({ files: 1, directories: 1, symlinks: 1, bytes: 5 });
    expect(fs.readFileSync(path.join(out, 'top', 'a.txt'), 'utf8')).toBe('hello');
    expect(fs.readlinkSync(path.join(out, 'top', 'l'))).toBe('a.txt');
  });

  it.each(['../evil', '/abs/evil', 'a/../../evil'])('refuses the entry name %j', async (name) => {
    const tar = Buffer.concat([header(name, '0', 4), body('evil'), end]);
    await expect(untar(chunks(tar), path.join(dir, 'out'))).rejects.toThrow(UntarError);
    expect(fs.existsSync(path.join(dir, 'evil'))).toBe(false);
  });

  it('never writes through a symlink from the archive', async () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    const tar = Buffer.concat([header('link', '2', 0, outside), header('link/owned', '0', 4), body('evil'), end]);
    await expect(untar(chunks(tar), path.join(dir, 'out'))).rejects.toThrow(/not a folder/);
    expect(fs.readdirSync(outside)).toEqual([]);
    // A symlink replaced by a file of the same name is removed, not followed.
    const tar2 = Buffer.concat([header('f', '2', 0, path.join(outside, 'target')), header('f', '0', 2), body('ok'), end]);
    await untar(chunks(tar2), path.join(dir, 'out2'));
    expect(fs.readFileSync(path.join(dir, 'out2', 'f'), 'utf8')).toBe('ok');
    expect(fs.existsSync(path.join(outside, 'target'))).toBe(false);
  });

  it('reports a truncated stream', async () => {
    const tar = Buffer.concat([header('a', '0', 600), body('x')]);
    await expect(untar(chunks(tar), path.join(dir, 'out'))).rejects.toThrow(/ended early/);
  });
});

describe('BrowseSessions', () => {
  it('shares one browser per point, keeps it while in use and closes it when idle', async () => {
    let opened = 0;
    let closed = 0;
    const sessions = new BrowseSessions({
      idleMs: 50,
      open: async () => {
        opened++;
        return { close: async () => void closed++ } as unknown as FileBrowser;
      },
    });
    try {
      await Promise.all([sessions.use('p1', async () => 1), sessions.use('p1', async () => 2)]);
      expect(opened).toBe(1);
      let release!: () => void;
      const busy = sessions.use('p1', () => new Promise<void>((r) => (release = r)));
      await new Promise((r) => setTimeout(r, 80));
      await sessions.sweep();
      expect(closed).toBe(0);
      release();
      await busy;
      await new Promise((r) => setTimeout(r, 80));
      await sessions.sweep();
      expect(closed).toBe(1);
      expect(sessions.size).toBe(0);
      await sessions.use('p1', async () => 3);
      expect(opened).toBe(2);
    } finally {
      await sessions.shutdown();
    }
    expect(closed).toBe(2);
  });

  it('forgets a point that failed to open', async () => {
    let calls = 0;
    const sessions = new BrowseSessions({
      open: async () => {
        calls++;
        throw new Error('no such point');
      },
    });
    await expect(sessions.use('p', async () => 1)).rejects.toThrow('no such point');
    await expect(sessions.use('p', async () => 1)).rejects.toThrow('no such point');
    expect(calls).toBe(2);
    await sessions.shutdown();
  });

  it('waits for a free session when all are in use, and closes the longest-idle one for a new point', async () => {
    const closed: string[] = [];
    const sessions = new BrowseSessions({
      maxSessions: 1,
      open: async (id) => ({ close: async () => void closed.push(id) }) as unknown as FileBrowser,
    });
    try {
      let release!: () => void;
      const busy = sessions.use('p1', () => new Promise<void>((r) => (release = r)));
      let second = false;
      const waiting = sessions.use('p2', async () => void (second = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(second).toBe(false);
      expect(sessions.size).toBe(1);
      release();
      await Promise.all([busy, waiting]);
      expect(second).toBe(true);
      expect(closed).toEqual(['p1']);
      expect(sessions.size).toBe(1);
    } finally {
      await sessions.shutdown();
    }
  });

  it('drops a session whose browser failed and opens a new one for the next request', async () => {
    let opened = 0;
    let closed = 0;
    const browsers: { failure: Error | null }[] = [];
    const sessions = new BrowseSessions({
      open: async () => {
        opened++;
        const b = { failure: null as Error | null, close: async () => void closed++ };
        browsers.push(b);
        return b as unknown as FileBrowser;
      },
    });
    try {
      await expect(
        sessions.use('p', async () => {
          browsers[0].failure = new Error('thread stopped');
          throw browsers[0].failure;
        }),
      ).rejects.toThrow('thread stopped');
      expect(sessions.size).toBe(0);
      expect(closed).toBe(1);
      await sessions.use('p', async () => undefined);
      expect(opened).toBe(2);
      browsers[1].failure = new Error('crashed while idle');
      await sessions.use('p', async () => undefined);
      expect(opened).toBe(3);
    } finally {
      await sessions.shutdown();
    }
  });
});
