/**
 * vSphere tags through the vAPI tagging REST endpoints of vCenter (/rest/com/vmware/cis/...): a session of its
 * own (Basic authentication once, then the `vmware-api-session-id` header), tags and categories by id, and the
 * objects attached to them. Requests go over the SOAP connection's verifying TLS agent, so certificate pinning
 * applies the same way. ESXi hosts have no tagging service: readVmTags answers undefined there.
 */
import type * as https from 'node:https';
import * as httpsModule from 'node:https';
import { AuthenticationError, ConnectionError, VsphereError } from './errors';
import { mapSoapError } from './faults';

/** A tag attached to a VM: its category's name and its own. */
export interface VmTag {
  category: string;
  name: string;
}

export interface TaggingOptions {
  /** https://host[:port] */
  origin: string;
  host: string;
  agent: https.Agent;
  username: string;
  password: string;
  timeoutMs: number;
}

const BASE = '/rest/com/vmware/cis';
const SESSION_HEADER = 'vmware-api-session-id';
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

export interface JsonResponse {
  status: number;
  body: unknown;
}

/** Sends one vAPI request (path below /rest/com/vmware/cis) and answers its status and parsed JSON body. */
export type VapiSend = (method: string, path: string, body: unknown, headers: Record<string, string>) => Promise<JsonResponse>;

/**
 * Every VM's tags, by VM managed object id (VMs without tags are absent). Undefined when the host has no
 * tagging service (404 on the session endpoint, e.g. ESXi). Throws AuthenticationError, ConnectionError or
 * VsphereError (unexpected answers).
 */
export async function readVmTags(options: TaggingOptions, send: VapiSend = httpsSend(options)): Promise<Map<string, VmTag[]> | undefined> {
  const api = new TaggingApi(options, send);
  if (!(await api.login())) return undefined;
  try {
    const tagIds = await api.value<string[]>('GET', '/tagging/tag');
    if (!Array.isArray(tagIds) || tagIds.length === 0) return new Map();
    const tags = new Map<string, { name: string; categoryId: string }>();
    for (const id of tagIds) {
      // A tag or category deleted since the listing answers 404: it is left out.
      const tag = await api.value<{ name?: string; category_id?: string }>('GET', `/tagging/tag/id:${encodeURIComponent(id)}`, undefined, true);
      if (tag?.name && tag.category_id) tags.set(id, { name: tag.name, categoryId: tag.category_id });
    }
    const categories = new Map<string, string>();
    for (const categoryId of new Set([...tags.values()].map((t) => t.categoryId))) {
      const category = await api.value<{ name?: string }>('GET', `/tagging/category/id:${encodeURIComponent(categoryId)}`, undefined, true);
      if (category?.name) categories.set(categoryId, category.name);
    }
    const attached = await api.value<{ tag_id?: string; object_ids?: { type?: string; id?: string }[] }[]>(
      'POST',
      '/tagging/tag-association?~action=list-attached-objects-on-tags',
      { tag_ids: [...tags.keys()] },
    );
    const byVm = new Map<string, VmTag[]>();
    for (const entry of Array.isArray(attached) ? attached : []) {
      const tag = entry.tag_id ? tags.get(entry.tag_id) : undefined;
      const category = tag ? categories.get(tag.categoryId) : undefined;
      if (!tag || category === undefined) continue;
      for (const object of entry.object_ids ?? []) {
        if (object.type !== 'VirtualMachine' || !object.id) continue;
        const list = byVm.get(object.id) ?? [];
        if (!list.some((t) => t.category === category && t.name === tag.name)) list.push({ category, name: tag.name });
        byVm.set(object.id, list);
      }
    }
    return byVm;
  } finally {
    await api.logout();
  }
}

class TaggingApi {
  private session: string | undefined;

  constructor(
    private readonly options: Pick<TaggingOptions, 'host' | 'username' | 'password'>,
    private readonly transport: VapiSend,
  ) {}

  /** Creates a vAPI session; false when the host has no vAPI endpoint. */
  async login(): Promise<boolean> {
    const basic = Buffer.from(`${this.options.username}:${this.options.password}`).toString('base64');
    const response = await this.send('POST', '/session', undefined, { Authorization: `Basic ${basic}` });
    if (response.status === 404) return false;
    if (response.status === 401 || response.status === 403) {
      throw new AuthenticationError(`${this.options.host} refused the user name or password for ${this.options.username} (vAPI tagging)`);
    }
    const id = this.expectValue<string>(response, 'POST /session');
    if (typeof id !== 'string' || !id) throw new VsphereError(`${this.options.host}: the vAPI session endpoint returned no session id`);
    this.session = id;
    return true;
  }

  async logout(): Promise<void> {
    if (!this.session) return;
    await this.send('DELETE', '/session').catch(() => undefined);
    this.session = undefined;
  }

  /** The `value` of a successful answer; undefined for a 404 when `goneIsEmpty`. */
  async value<T>(method: string, path: string, body?: unknown, goneIsEmpty = false): Promise<T | undefined> {
    const response = await this.send(method, path, body);
    if (goneIsEmpty && response.status === 404) return undefined;
    return this.expectValue<T>(response, `${method} ${path.replace(/\?.*$/, '')}`);
  }

  private expectValue<T>(response: JsonResponse, what: string): T | undefined {
    if (response.status < 200 || response.status >= 300) {
      throw new VsphereError(`${this.options.host}: vAPI ${what} answered HTTP ${response.status}`);
    }
    const body = response.body as { value?: T } | undefined;
    return body?.value;
  }

  private send(method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<JsonResponse> {
    const headers: Record<string, string> = { ...extraHeaders };
    if (this.session) headers[SESSION_HEADER] = this.session;
    return this.transport(method, path, body, headers);
  }
}

/** The real transport: HTTPS over the SOAP connection's verifying agent, JSON in and out, bounded and timed. */
function httpsSend(options: TaggingOptions): VapiSend {
  return (method, path, body, extraHeaders) => {
    const { origin, host, agent, timeoutMs } = options;
    const what = `${method} ${BASE}${path.replace(/\?.*$/, '')}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Accept: 'application/json', ...extraHeaders };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    return new Promise<JsonResponse>((resolve, reject) => {
      const request = httpsModule.request(`${origin}${BASE}${path}`, { method, agent, headers }, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) request.destroy(new ConnectionError(`${what} on ${host}: response larger than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(chunk);
        });
        response.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            if (response.statusCode && response.statusCode < 300) {
              reject(new VsphereError(`${host}: vAPI ${what} returned a body that is not JSON`));
              return;
            }
          }
          resolve({ status: response.statusCode ?? 0, body: parsed });
        });
        response.once('error', (error) => reject(mapSoapError(error, host, what)));
      });
      request.setTimeout(timeoutMs, () => request.destroy(new ConnectionError(`cannot reach ${host} (${what}): timed out`)));
      request.once('error', (error) => reject(mapSoapError(error, host, what)));
      request.end(payload);
    });
  };
}
