/**
 * The wire to one host: node-soap client over the shipped WSDL, the session cookie, re-login when the host says
 * the session is gone, and cookie-carrying GETs for /folder. Higher-level calls live in client.ts.
 */
import * as path from 'node:path';
import * as soap from 'soap';
import type { ConnectOptions, MoRef } from './types';
import { AuthenticationError, FaultError, VsphereError } from './errors';
import { mapSoapError } from './faults';
import { httpGet, httpPut, type HttpResponse, type PutBody } from './http';
import { parseHostUrl, VerifyingAgent } from './tls';
import { field, moRef, moRefArg, text, type SoapValue } from './values';

const WSDL_PATH = path.join(__dirname, '../assets/vim25.wsdl');
const SESSION_COOKIE = 'vmware_soap_session';
const DEFAULT_TIMEOUT_MS = 60_000;
/** Used when the host does not publish /sdk/vimServiceVersions.xml (it then announces apiVersion in about). */
const FALLBACK_VERSION = '6.5';

type SoapMethod = (args: unknown, options: object, headers: object) => Promise<[SoapValue, ...unknown[]]>;

export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  /** FileManager (datastore folders and files); absent on hosts that do not offer it. */
  fileManager?: MoRef;
  /** GuestOperationsManager (guest-ops.ts); absent on hosts that do not offer it. */
  guestOperationsManager?: MoRef;
  about: SoapValue;
}

/** Operations that must not trigger a re-login when they fail with NotAuthenticated. */
const NO_RELOGIN = new Set(['Login', 'Logout', 'RetrieveServiceContent']);

export class VimConnection {
  readonly host: string;
  readonly origin: string;
  readonly timeoutMs: number;
  private cookie: string | undefined;
  private loginInFlight: Promise<void> | undefined;
  /** UserSession.key of the current session (what SessionManager.TerminateSession takes). */
  sessionKey: string | undefined;

  private constructor(
    private readonly options: ConnectOptions,
    private readonly client: soap.Client,
    readonly agent: VerifyingAgent,
    readonly serviceContent: ServiceContent,
  ) {
    const target = parseHostUrl(options.url);
    this.host = target.hostname;
    this.origin = target.origin;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Loads the WSDL, learns the API version, reads the ServiceContent and logs in. */
  static async open(options: ConnectOptions): Promise<VimConnection> {
    const target = parseHostUrl(options.url);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const agent = new VerifyingAgent({ host: target.hostname, policy: options, timeoutMs });
    try {
      const client = await soap.createClientAsync(WSDL_PATH, { endpoint: `${target.origin}/sdk` });
      const version = await fetchApiVersion(target.origin, target.hostname, agent, timeoutMs);
      client.setSOAPAction(`urn:vim25/${version ?? FALLBACK_VERSION}`);

      const content = await invokeRaw(client, 'RetrieveServiceContent', { _this: moRefArg({ type: 'ServiceInstance', value: 'ServiceInstance' }) }, agent, timeoutMs, target.hostname);
      const serviceContent = parseServiceContent(content, target.hostname);
      if (!version) {
        const announced = text(field(serviceContent.about, 'apiVersion'));
        if (announced) client.setSOAPAction(`urn:vim25/${announced}`);
      }
      const connection = new VimConnection(options, client, agent, serviceContent);
      await connection.login();
      return connection;
    } catch (error) {
      agent.destroy();
      throw error;
    }
  }

  /** Calls a vim25 operation with the session cookie; re-logs in once if the session expired. Returns `returnval`. */
  async call(method: string, args: Record<string, unknown>): Promise<SoapValue> {
    const cookie = this.cookie;
    try {
      return await this.invoke(method, args);
    } catch (error) {
      if (!(error instanceof FaultError) || error.fault !== 'NotAuthenticated' || NO_RELOGIN.has(method)) throw error;
      await this.relogin(cookie);
      return this.invoke(method, args);
    }
  }

  /**
   * GET on the host with the session cookie (for /folder); re-logs in once on 401/403. `into`: see
   * HttpGetOptions.into.
   */
  async get(pathAndQuery: string, headers: Record<string, string>, maxBytes: number, into?: Buffer): Promise<HttpResponse> {
    const cookie = this.cookie;
    const send = () =>
      httpGet(`${this.origin}${pathAndQuery}`, {
        agent: this.agent,
        host: this.host,
        headers: { ...headers, ...(this.cookie ? { Cookie: `${SESSION_COOKIE}=${this.cookie}` } : {}) },
        timeoutMs: this.timeoutMs,
        maxBytes,
        into,
      });
    const response = await send();
    if (response.status !== 401 && response.status !== 403) return response;
    await this.relogin(cookie);
    return send();
  }

  /**
   * PUT on the host with the session cookie (datastore uploads over /folder). A fresh body is asked for per
   * attempt: on 401/403 the session is renewed and the upload starts again once.
   */
  async put(pathAndQuery: string, body: () => PutBody, signal?: AbortSignal): Promise<HttpResponse> {
    const cookie = this.cookie;
    const send = () =>
      httpPut(`${this.origin}${pathAndQuery}`, body(), {
        agent: this.agent,
        host: this.host,
        headers: this.cookie ? { Cookie: `${SESSION_COOKIE}=${this.cookie}` } : {},
        timeoutMs: this.timeoutMs,
        maxBytes: 1 << 20,
        signal,
      });
    const response = await send();
    if (response.status !== 401 && response.status !== 403) return response;
    await this.relogin(cookie);
    return send();
  }

  async login(): Promise<void> {
    // Never send an old cookie with Login: some hosts refuse a Login inside a live session.
    this.cookie = undefined;
    const session = await this.invoke('Login', {
      _this: moRefArg(this.serviceContent.sessionManager),
      userName: this.options.username,
      password: this.options.password,
    }).catch((error: unknown) => {
      if (error instanceof AuthenticationError) {
        throw new AuthenticationError(`${this.host} refused the user name or password for ${this.options.username}`);
      }
      throw error;
    });
    const cookie = sessionCookie(this.client.lastResponseHeaders?.['set-cookie']);
    if (!cookie) throw new VsphereError(`${this.host} did not return a ${SESSION_COOKIE} cookie on Login`);
    this.cookie = cookie;
    this.sessionKey = text(field(session, 'key'));
  }

  /** Logs in again unless another caller already did since `staleCookie` was in use. */
  private async relogin(staleCookie: string | undefined): Promise<void> {
    if (this.loginInFlight) return this.loginInFlight;
    if (this.cookie !== staleCookie) return;
    this.loginInFlight = this.login().finally(() => {
      this.loginInFlight = undefined;
    });
    return this.loginInFlight;
  }

  async logout(): Promise<void> {
    try {
      if (this.cookie) await this.invoke('Logout', { _this: moRefArg(this.serviceContent.sessionManager) });
    } catch {
      // The session may already be gone; logging out is best effort.
    } finally {
      this.cookie = undefined;
      this.agent.destroy();
    }
  }

  private invoke(method: string, args: Record<string, unknown>): Promise<SoapValue> {
    const headers: Record<string, string> = this.cookie ? { Cookie: `${SESSION_COOKIE}=${this.cookie}` } : {};
    return invokeRaw(this.client, method, args, this.agent, this.timeoutMs, this.host, headers);
  }
}

async function invokeRaw(
  client: soap.Client,
  method: string,
  args: Record<string, unknown>,
  agent: VerifyingAgent,
  timeoutMs: number,
  host: string,
  headers: Record<string, string> = {},
): Promise<SoapValue> {
  const fn = (client as unknown as Record<string, SoapMethod | undefined>)[`${method}Async`];
  if (typeof fn !== 'function') throw new VsphereError(`operation ${method} is not in the client's WSDL`);
  try {
    const [result] = await fn.call(client, args, { httpsAgent: agent, timeout: timeoutMs, proxy: false }, headers);
    return field(result, 'returnval');
  } catch (error) {
    throw mapSoapError(error, host, method);
  }
}

/** The vim25 version the host speaks, from /sdk/vimServiceVersions.xml; undefined when it does not say. */
async function fetchApiVersion(origin: string, host: string, agent: VerifyingAgent, timeoutMs: number): Promise<string | undefined> {
  const response = await httpGet(`${origin}/sdk/vimServiceVersions.xml`, { agent, host, timeoutMs, maxBytes: 1 << 20 });
  if (response.status !== 200) return undefined;
  return parseVersionsXml(response.body.toString('utf8'));
}

/** The current version of the urn:vim25 namespace in a vimServiceVersions.xml document. */
export function parseVersionsXml(xml: string): string | undefined {
  for (const block of xml.split(/<namespace>/).slice(1)) {
    if (!/<name>\s*urn:vim25\s*<\/name>/.test(block)) continue;
    const withoutPrior = block.replace(/<priorVersions>[\s\S]*?<\/priorVersions>/, '');
    const version = /<version>\s*([^<\s]+)\s*<\/version>/.exec(withoutPrior);
    if (version) return version[1];
  }
  return undefined;
}

/** The value of the vmware_soap_session cookie in Set-Cookie headers. */
export function sessionCookie(setCookie: string | string[] | undefined): string | undefined {
  for (const header of [setCookie ?? []].flat()) {
    const match = new RegExp(`(?:^|;\\s*)${SESSION_COOKIE}=([^;]*)`).exec(header);
    if (match) return match[1];
  }
  return undefined;
}

function parseServiceContent(value: SoapValue, host: string): ServiceContent {
  const ref = (name: string): MoRef => {
    const parsed = moRef(field(value, name));
    if (!parsed) throw new VsphereError(`${host}: ServiceContent has no ${name}`);
    return parsed;
  };
  return {
    rootFolder: ref('rootFolder'),
    propertyCollector: ref('propertyCollector'),
    viewManager: ref('viewManager'),
    sessionManager: ref('sessionManager'),
    fileManager: moRef(field(value, 'fileManager')),
    guestOperationsManager: moRef(field(value, 'guestOperationsManager')),
    about: field(value, 'about'),
  };
}
