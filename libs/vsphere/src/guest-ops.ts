/**
 * Guest operations on one VM (GuestOperationsManager → GuestFileManager): check that VMware Tools run, make
 * folders, list and upload files inside the running guest, authenticating with guest credentials
 * (NamePasswordAuthentication). The guest password is only ever put in the SOAP body: never in messages or logs.
 */
import type { Readable } from 'node:stream';
import type { VimConnection } from './connection';
import { FaultError, VsphereError } from './errors';
import { httpPut } from './http';
import { objectsSpec, retrieveAll } from './property-collector';
import { VerifyingAgent, type TlsPolicy } from './tls';
import type { MoRef } from './types';
import { arrayItems, field, int, moRef, moRefArg, text, type SoapValue } from './values';

/** Guest OS account used for guest operations. Never logged or stored by this library. */
export interface GuestCredentials {
  username: string;
  password: string;
}

/** VMware Tools are not running in the guest (or the VM is not powered on): guest operations cannot work. */
export class GuestToolsError extends VsphereError {}

/** The guest refused the user name or password (InvalidGuestLogin), or the account may not do this. */
export class GuestAuthenticationError extends VsphereError {}

/** The guest path exists already and overwriting was not asked for (FileAlreadyExists). */
export class GuestFileExistsError extends VsphereError {
  constructor(
    message: string,
    readonly guestPath: string,
  ) {
    super(message);
  }
}

export type GuestFileType = 'file' | 'directory' | 'symlink';

export interface GuestFileInfo {
  /** The name (ListFilesInGuest answers names relative to the listed folder; a listed file gives its own name). */
  path: string;
  type: GuestFileType;
  size: number;
}

/** What GuestFiles.state() found out about the VM. */
export interface GuestState {
  powerState: string;
  toolsRunningStatus: string;
  /** "linuxGuest", "windowsGuest", ... or "" when Tools did not say. */
  guestFamily: string;
}

/** Optional attributes of an uploaded file (GuestPosixFileAttributes on POSIX guests, the base type otherwise). */
export interface GuestUploadAttributes {
  /** POSIX permission bits (ignored for Windows guests). */
  mode?: number;
  mtime?: Date;
}

export interface GuestUpload {
  stream: Readable;
  size: number;
  attributes?: GuestUploadAttributes;
  overwrite: boolean;
}

const TOOLS_FAULTS = new Set(['GuestOperationsUnavailable', 'ToolsUnavailable', 'InvalidPowerState', 'InvalidState', 'GuestComponentsOutOfDate']);
const AUTH_FAULTS = new Set(['InvalidGuestLogin', 'GuestPermissionDenied', 'GuestAuthenticationChallenge', 'GuestMultipleMappings']);
const LIST_PAGE = 500;

/** Maps guest-operation faults to the typed errors above; others pass unchanged. */
export function guestError(error: unknown, vmId: string, guestPath?: string): unknown {
  if (!(error instanceof FaultError)) return error;
  const where = guestPath === undefined ? '' : ` (${guestPath})`;
  if (TOOLS_FAULTS.has(error.fault)) return new GuestToolsError(`VM ${vmId}: guest operations are unavailable, VMware Tools are not running (${error.fault})`);
  if (AUTH_FAULTS.has(error.fault)) return new GuestAuthenticationError(`VM ${vmId}: the guest refused the credentials${where} (${error.fault})`);
  if (error.fault === 'FileAlreadyExists' && guestPath !== undefined) return new GuestFileExistsError(`VM ${vmId}: ${guestPath} already exists in the guest`, guestPath);
  return error;
}

/**
 * The URL InitiateFileTransferToGuest returned, made usable: ESXi writes "*" for "the host you are talking to".
 * Only https is accepted.
 */
export function transferUrl(raw: string, sessionHost: string): URL {
  let url: URL;
  try {
    url = new URL(raw.replace(/^(https?:\/\/)\*(?=[:/])/i, `$1${sessionHost.includes(':') ? `[${sessionHost}]` : sessionHost}`));
  } catch {
    throw new VsphereError(`the host returned an unusable guest transfer URL`);
  }
  if (url.protocol !== 'https:') throw new VsphereError(`the host returned a guest transfer URL that is not https`);
  return url;
}

/**
 * A guest path's folder and last name: "/a/b" → "/a" + "b", "/a" → "/" + "a", "C:\\x" → "C:\\" + "x"; a root
 * ("/", "C:\\") has no name.
 */
export function splitGuestPath(guestPath: string, separator: '/' | '\\'): { parent: string; name: string } {
  const trimmed = guestPath.length > 1 && !/^[A-Za-z]:[\\/]$/.test(guestPath) ? guestPath.replace(/[\\/]+$/, '') : guestPath;
  const cut = trimmed.lastIndexOf(separator);
  if (cut < 0) return { parent: separator, name: trimmed };
  let parent = trimmed.slice(0, cut) || separator;
  if (/^[A-Za-z]:$/.test(parent)) parent += separator;
  return { parent, name: trimmed.slice(cut + 1) };
}

/** NamePasswordAuthentication as node-soap serialises it (xsi:type, members in the reference's order). */
function authArg(credentials: GuestCredentials) {
  return {
    attributes: { 'xsi:type': 'NamePasswordAuthentication' },
    interactiveSession: false,
    username: credentials.username,
    password: credentials.password,
  };
}

/** GuestFileAttributes for an upload: POSIX permissions and mtime on non-Windows guests. */
export function fileAttributesArg(attributes: GuestUploadAttributes | undefined, guestFamily: string): Record<string, unknown> {
  const windows = guestFamily === 'windowsGuest';
  const arg: Record<string, unknown> = { attributes: { 'xsi:type': windows ? 'GuestWindowsFileAttributes' : 'GuestPosixFileAttributes' } };
  if (attributes?.mtime && Number.isFinite(attributes.mtime.getTime())) arg.modificationTime = attributes.mtime.toISOString();
  if (!windows && attributes?.mode !== undefined) arg.permissions = attributes.mode & 0o7777;
  return arg;
}

/** One ListFilesInGuest answer (GuestListFileInfo). */
export function parseListFiles(value: SoapValue): { files: GuestFileInfo[]; remaining: number } {
  const files = arrayItems(field(value, 'files')).map((f) => {
    const type = text(field(f, 'type'));
    return {
      path: text(field(f, 'path')) ?? '',
      type: (type === 'directory' || type === 'symlink' ? type : 'file') as GuestFileType,
      size: int(field(f, 'size')) ?? 0,
    };
  });
  return { files, remaining: int(field(value, 'remaining')) ?? 0 };
}

/** Guest file operations on one VM; from VimSession.guestFiles(vmId, credentials). */
export class GuestFiles {
  private guestFamily = '';
  private readonly vm: MoRef;

  constructor(
    private readonly connection: VimConnection,
    vmId: string,
    private readonly credentials: GuestCredentials,
    private readonly tls: TlsPolicy,
  ) {
    this.vm = { type: 'VirtualMachine', value: vmId };
  }

  get vmId(): string {
    return this.vm.value;
  }

  private get fileManager(): Promise<MoRef> {
    const manager = this.connection.serviceContent.guestOperationsManager;
    if (!manager) return Promise.reject(new GuestToolsError(`${this.connection.host} offers no guest operations`));
    return retrieveAll((m, a) => this.connection.call(m, a), this.connection.serviceContent.propertyCollector, [objectsSpec(manager.type, [manager], ['fileManager'])], 10).then(([o]) => {
      const ref = moRef(o?.props.get('fileManager'));
      if (!ref) throw new GuestToolsError(`${this.connection.host} offers no guest file manager`);
      return ref;
    });
  }

  private managerRef: Promise<MoRef> | undefined;

  private async call(method: string, args: Record<string, unknown>, guestPath?: string): Promise<SoapValue> {
    this.managerRef ??= this.fileManager.catch((error: unknown) => {
      this.managerRef = undefined;
      throw error;
    });
    const manager = await this.managerRef;
    try {
      return await this.connection.call(method, { _this: moRefArg(manager), vm: moRefArg(this.vm), auth: authArg(this.credentials), ...args });
    } catch (error) {
      throw guestError(error, this.vm.value, guestPath);
    }
  }

  /** Power state, Tools running status and guest family of the VM. */
  async state(): Promise<GuestState> {
    const paths = ['runtime.powerState', 'guest.toolsRunningStatus', 'guest.guestFamily'];
    const [object] = await retrieveAll((m, a) => this.connection.call(m, a), this.connection.serviceContent.propertyCollector, [objectsSpec('VirtualMachine', [this.vm], paths)], 10);
    if (!object) throw new VsphereError(`VM ${this.vm.value} not found on ${this.connection.host}`);
    const state = {
      powerState: text(object.props.get('runtime.powerState')) ?? '',
      toolsRunningStatus: text(object.props.get('guest.toolsRunningStatus')) ?? '',
      guestFamily: text(object.props.get('guest.guestFamily')) ?? '',
    };
    this.guestFamily = state.guestFamily;
    return state;
  }

  /** Throws GuestToolsError unless the VM is powered on with VMware Tools running. */
  async requireTools(): Promise<GuestState> {
    const state = await this.state();
    if (state.powerState !== 'poweredOn') throw new GuestToolsError(`VM ${this.vm.value} is not powered on (${state.powerState || 'unknown'}): files cannot be restored into its guest`);
    if (state.toolsRunningStatus !== 'guestToolsRunning') {
      throw new GuestToolsError(`VM ${this.vm.value}: VMware Tools are not running in the guest (${state.toolsRunningStatus || 'unknown'}): files cannot be restored into it`);
    }
    return state;
  }

  /** The entry at `guestPath` (listed through its parent folder), or undefined when it does not exist. */
  async stat(guestPath: string, separator: '/' | '\\' = '/'): Promise<GuestFileInfo | undefined> {
    const { parent, name } = splitGuestPath(guestPath, separator);
    if (!name) return { path: guestPath, type: 'directory', size: 0 };
    const pattern = `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
    try {
      const { files } = parseListFiles(await this.call('ListFilesInGuest', { filePath: parent, index: 0, maxResults: 2, matchPattern: pattern }, guestPath));
      return files.find((f) => f.path === name);
    } catch (error) {
      if (error instanceof FaultError && error.fault === 'FileNotFound') return undefined;
      throw error;
    }
  }

  /** Every entry of a guest folder (or the file itself), paging ListFilesInGuest. */
  async list(guestPath: string): Promise<GuestFileInfo[]> {
    const out: GuestFileInfo[] = [];
    for (let index = 0; ; ) {
      const page = parseListFiles(await this.call('ListFilesInGuest', { filePath: guestPath, index, maxResults: LIST_PAGE }, guestPath));
      out.push(...page.files);
      index += page.files.length;
      if (page.remaining <= 0 || page.files.length === 0) return out;
    }
  }

  /** MakeDirectoryInGuest; GuestFileExistsError when it exists. */
  async makeDirectory(guestPath: string, createParents = false): Promise<void> {
    await this.call('MakeDirectoryInGuest', { directoryPath: guestPath, createParentDirectories: createParents }, guestPath);
  }

  /**
   * InitiateFileTransferToGuest, then one HTTPS PUT of exactly `size` bytes to the URL it returned. A host of
   * "*" is the session's host (same TLS policy, pinned thumbprint included); another host (an ESXi behind
   * vCenter) must present a certificate trusted by Node's CA store unless the connection is `insecure`.
   */
  async upload(guestPath: string, body: GuestUpload, signal?: AbortSignal): Promise<void> {
    const raw = text(
      await this.call(
        'InitiateFileTransferToGuest',
        { guestFilePath: guestPath, fileAttributes: fileAttributesArg(body.attributes, this.guestFamily), fileSize: body.size, overwrite: body.overwrite },
        guestPath,
      ),
    );
    if (!raw) throw new VsphereError(`VM ${this.vm.value}: InitiateFileTransferToGuest returned no URL`);
    const url = transferUrl(raw, this.connection.host);
    const sameHost = url.hostname.replace(/^\[|\]$/g, '') === this.connection.host && url.port === new URL(this.connection.origin).port;
    const agent = sameHost ? this.connection.agent : new VerifyingAgent({ host: url.hostname, policy: { insecure: this.tls.insecure }, timeoutMs: this.connection.timeoutMs });
    try {
      const response = await httpPut(url.toString(), { stream: body.stream, size: body.size }, { agent, host: url.hostname, timeoutMs: this.connection.timeoutMs, maxBytes: 64 * 1024, signal });
      if (response.status < 200 || response.status > 299) {
        throw new VsphereError(`VM ${this.vm.value}: upload of ${guestPath} into the guest failed: HTTP ${response.status}`);
      }
    } finally {
      if (!sameHost) agent.destroy();
    }
  }
}
