import type * as https from 'node:https';
import { AuthenticationError, VsphereError } from './errors';
import { readVmTags, type JsonResponse, type VapiSend } from './tags';

const options = { origin: 'https://vc1', host: 'vc1', agent: {} as https.Agent, username: 'admin', password: 'pw', timeoutMs: 1000 };

/** A vAPI stand-in answering by "METHOD path"; records every request (headers included). */
function vapi(routes: Record<string, JsonResponse>) {
  const seen: { call: string; body: unknown; headers: Record<string, string> }[] = [];
  const send: VapiSend = async (method, path, body, headers) => {
    const call = `${method} ${path}`;
    seen.push({ call, body, headers });
    return routes[call] ?? { status: 404, body: undefined };
  };
  return { send, seen };
}

const ok = (value?: unknown): JsonResponse => ({ status: 200, body: value === undefined ? undefined : { value } });

describe('readVmTags', () => {
  it('maps tags to VMs by category and name, skipping other objects and duplicates, and ends the session', async () => {
    const { send, seen } = vapi({
      'POST /session': ok('sess-1'),
      'GET /tagging/tag': ok(['t1', 't2', 't3']),
      'GET /tagging/tag/id:t1': ok({ name: 'prod', category_id: 'c1' }),
      'GET /tagging/tag/id:t2': ok({ name: 'gold', category_id: 'c2' }),
      'GET /tagging/tag/id:t3': ok({ name: 'orphan', category_id: 'c9' }),
      'GET /tagging/category/id:c1': ok({ name: 'env' }),
      'GET /tagging/category/id:c2': ok({ name: 'tier' }),
      'POST /tagging/tag-association?~action=list-attached-objects-on-tags': ok([
        { tag_id: 't1', object_ids: [{ type: 'VirtualMachine', id: 'vm-1' }, { type: 'HostSystem', id: 'host-1' }, { type: 'VirtualMachine', id: 'vm-1' }] },
        { tag_id: 't2', object_ids: [{ type: 'VirtualMachine', id: 'vm-1' }, { type: 'VirtualMachine', id: 'vm-2' }] },
        { tag_id: 't3', object_ids: [{ type: 'VirtualMachine', id: 'vm-3' }] },
      ]),
      'DELETE /session': ok(),
    });
    const tags = await readVmTags(options, send);
    expect(Object.fromEntries(tags!)).toEqual({
      'vm-1': [{ category: 'env', name: 'prod' }, { category: 'tier', name: 'gold' }],
      'vm-2': [{ category: 'tier', name: 'gold' }],
    });
    expect(seen[0].headers.Authorization).toBe(`Basic ${Buffer.from('admin:pw').toString('base64')}`);
    expect(seen.slice(1).every((r) => r.headers['vmware-api-session-id'] === 'sess-1' && !r.headers.Authorization)).toBe(true);
    expect(seen.find((r) => r.call.includes('list-attached-objects-on-tags'))!.body).toEqual({ tag_ids: ['t1', 't2', 't3'] });
    expect(seen.at(-1)!.call).toBe('DELETE /session');
  });

  it('answers an empty map without tags, and undefined when the host has no tagging service (ESXi)', async () => {
    const empty = vapi({ 'POST /session': ok('s'), 'GET /tagging/tag': ok([]) });
    expect((await readVmTags(options, empty.send))!.size).toBe(0);
    expect(empty.seen.at(-1)!.call).toBe('DELETE /session');
    const esxi = vapi({});
    expect(await readVmTags(options, esxi.send)).toBeUndefined();
    expect(esxi.seen.map((r) => r.call)).toEqual(['POST /session']);
  });

  it('refuses wrong credentials with an AuthenticationError and names a failing call otherwise', async () => {
    await expect(readVmTags(options, vapi({ 'POST /session': { status: 401, body: undefined } }).send)).rejects.toThrow(AuthenticationError);
    const broken = vapi({ 'POST /session': ok('s'), 'GET /tagging/tag': { status: 500, body: undefined } });
    await expect(readVmTags(options, broken.send)).rejects.toThrow(new VsphereError('vc1: vAPI GET /tagging/tag answered HTTP 500'));
    expect(broken.seen.at(-1)!.call).toBe('DELETE /session');
    const message = await readVmTags(options, vapi({ 'POST /session': { status: 403, body: undefined } }).send).catch((e: Error) => e.message);
    expect(message).not.toContain('pw');
  });
});
