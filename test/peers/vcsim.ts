/**
 * vcsim test peer: builds test/vcsim (a small Go main over govmomi's simulator, from Debian's
 * golang-github-vmware-govmomi-dev, offline in GOPATH mode) and starts it as a process in a temp folder.
 *
 *   const sim = await startVcsim({ seed: [{ name: 'vmkeep-demo-1', disks: [{ image: a.path }, { image: b.path }] }] });
 *   ... sim.url, sim.username, sim.password, sim.thumbprint, sim.vms ...
 *   await sim.stop();
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { makeTempDir, spawnPeer } from './process';

const execFileAsync = promisify(execFile);

const SOURCE_DIR = path.join(__dirname, '..', 'vcsim');
const BINARY = path.join(SOURCE_DIR, 'vcsim');
/** Where Debian installs Go library sources (golang-*-dev packages); override with VCSIM_GOPATH. */
const DEBIAN_GOPATH = '/usr/share/gocode';
const START_TIMEOUT_MS = 60_000;

export interface VcsimSeedDisk {
  /** Raw disk image on the local file system; copied into the datastore. Size must be a multiple of 1024. */
  image: string;
  /** "vmfs" (ESXi descriptor + VMFS extent, default), "flat" (monolithicFlat descriptor) or "raw" (no descriptor). */
  layout?: 'vmfs' | 'flat' | 'raw';
  /** vSphere disk mode, default "persistent" (e.g. "independent_persistent"). */
  diskMode?: string;
}

export interface VcsimSeedVm {
  name: string;
  powerOn?: boolean;
  disks: VcsimSeedDisk[];
  /** QueryChangedDiskAreas also reports areas that did not change (allowed by the API). */
  cbtOverReport?: boolean;
  /** Bytes of disk one QueryChangedDiskAreas answer covers (default 64 MiB). */
  cbtPageBytes?: number;
  /**
   * Guest credentials: the VM gets VMware Tools running and a guest file system at `<dir>/guest/<vm id>` for
   * guest operations (test/vcsim/guestops.go). Without it guest operations answer GuestOperationsUnavailable.
   */
  guest?: { username: string; password: string };
}

export interface VcsimOptions {
  username?: string;
  password?: string;
  /** Port on 127.0.0.1; 0 or absent picks a free one (give the old port to restart "the same" host). */
  port?: number;
  /** VMs to add, with disks holding the given images. */
  seed?: VcsimSeedVm[];
  /** Folders, resource pools, vSphere tags and custom attributes to give VMs (seeded or built in), by VM name. */
  labels?: VcsimVmLabels[];
}

/** Applied by test/vcsim/labels.go through the real APIs (RelocateVM_Task, vAPI tagging, SetField). */
export interface VcsimVmLabels {
  vm: string;
  /** Folder below the datacenter's VM folder ("prod/web"), created as needed. */
  folder?: string;
  /** Child resource pool of the cluster's root pool, created as needed. */
  pool?: string;
  tags?: { category: string; name: string }[];
  attributes?: Record<string, string>;
}

export interface VcsimDisk {
  key: number;
  label: string;
  /** "[LocalDS_0] vm/vm_0.vmdk" */
  fileName: string;
  capacityBytes: number;
  /** The backing file (descriptor, or the raw file) in the datastore folder. */
  localPath: string;
}

export interface VcsimVm {
  /** Managed object id, e.g. "vm-69". */
  id: string;
  name: string;
  disks: VcsimDisk[];
}

export interface VcsimDatastore {
  name: string;
  /** Local folder backing the datastore. */
  path: string;
}

export interface VcsimInstance {
  /** https://127.0.0.1:PORT (no /sdk). */
  url: string;
  port: number;
  username: string;
  password: string;
  /** SHA-256 fingerprint of the server certificate, "AA:BB:..." (upper case). */
  thumbprint: string;
  datacenter: string;
  datastores: VcsimDatastore[];
  vms: VcsimVm[];
  /** Temp folder holding the datastores; removed by stop(). */
  dir: string;
  pid: number;
  /** Stops the simulator (SIGTERM, then SIGKILL after 5 s) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL) without cleaning up: for "host died mid-operation" tests. */
  kill(signal?: NodeJS.Signals): void;
}

interface ReadyLine {
  url: string;
  username: string;
  password: string;
  thumbprint: string;
  datacenter: string;
  datastores: VcsimDatastore[];
  vms: VcsimVm[];
  pid: number;
}

let building: Promise<string> | undefined;

/** Builds test/vcsim/vcsim unless it is newer than its source; concurrent callers (even other processes) are safe. */
export function buildVcsim(): Promise<string> {
  building ??= buildOnce().catch((error: unknown) => {
    building = undefined;
    throw error;
  });
  return building;
}

async function buildOnce(): Promise<string> {
  const sources = (await fs.readdir(SOURCE_DIR)).filter((name) => name.endsWith('.go'));
  const newest = Math.max(...(await Promise.all(sources.map(async (name) => (await fs.stat(path.join(SOURCE_DIR, name))).mtimeMs))));
  const binary = await fs.stat(BINARY).catch(() => undefined);
  if (binary && binary.mtimeMs >= newest) return BINARY;

  // Build to a private name, then rename: another process building at the same time only wastes work.
  const temp = `${BINARY}.${process.pid}.${Date.now()}.tmp`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GOPATH: process.env.VCSIM_GOPATH ?? DEBIAN_GOPATH,
    GO111MODULE: 'off',
    GOFLAGS: '',
  };
  if (!env.GOCACHE && !env.HOME) env.GOCACHE = path.join(os.tmpdir(), 'vmkeep-go-build');
  try {
    await execFileAsync('go', ['build', '-o', temp, '.'], { cwd: SOURCE_DIR, env, maxBuffer: 16 * 1024 * 1024 });
    await fs.rename(temp, BINARY);
  } catch (error) {
    await fs.rm(temp, { force: true });
    const detail = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(`building vcsim failed (needs golang-go and golang-github-vmware-govmomi-dev): ${detail}`, { cause: error });
  }
  return BINARY;
}

/** Starts a vcsim process; resolves once it printed its ready line. */
export async function startVcsim(options: VcsimOptions = {}): Promise<VcsimInstance> {
  const binary = await buildVcsim();
  const dir = makeTempDir('vmkeep-vcsim-');
  const username = options.username ?? 'administrator@vsphere.local';
  const password = options.password ?? 'vcsim-Secret-1';
  const args = ['-dir', dir, '-port', String(options.port ?? 0), '-username', username, '-password', password];
  if (options.seed?.length || options.labels?.length) {
    const seedFile = path.join(dir, 'seed.json');
    await fs.writeFile(seedFile, JSON.stringify({ vms: options.seed ?? [], labels: options.labels ?? [] }));
    args.push('-seed', seedFile);
  }

  const peer = spawnPeer(binary, args, { cwd: dir });
  const { child } = peer;

  let ready: ReadyLine;
  try {
    ready = await readReadyLine(child, peer.tail);
  } catch (error) {
    child.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
    throw error;
  }

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= peer.stop(5000).then(() => fs.rm(dir, { recursive: true, force: true }));
    return stopped;
  };

  return {
    url: ready.url,
    port: Number(new URL(ready.url).port),
    username: ready.username,
    password: ready.password,
    thumbprint: ready.thumbprint,
    datacenter: ready.datacenter,
    datastores: ready.datastores,
    vms: ready.vms,
    dir,
    pid: child.pid!,
    stop,
    kill: (signal: NodeJS.Signals = 'SIGKILL') => {
      child.kill(signal);
    },
  };
}

function readReadyLine(child: ChildProcess, stderr: () => string): Promise<ReadyLine> {
  return new Promise<ReadyLine>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error(`vcsim did not start within ${START_TIMEOUT_MS} ms: ${stderr()}`)), START_TIMEOUT_MS);
    const onExit = (code: number | null, signal: string | null) => {
      // Give stderr a moment to drain so the message says why.
      setTimeout(() => fail(new Error(`vcsim exited (${code ?? signal}) before it was ready: ${stderr()}`)), 50);
    };
    function fail(error: Error) {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.close();
      reject(error);
    }
    child.once('exit', onExit);
    child.once('error', fail);
    lines.once('line', (line) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.close();
      child.stdout!.resume();
      try {
        resolve(JSON.parse(line) as ReadyLine);
      } catch {
        reject(new Error(`vcsim printed an unexpected line: ${line.slice(0, 200)}`));
      }
    });
  });
}
