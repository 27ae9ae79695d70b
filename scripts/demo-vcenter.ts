/**
 * Demo vCenter for the appliance start command: starts govmomi's simulator with two seeded VMs whose disks
 * hold real data (an ext4 file system and a random+zero disk), registers it with the running appliance through
 * the REST API (certificate pinned by thumbprint) and syncs its inventory. Prints READY, then runs until
 * stopped. Reads VMKEEP_URL, VMKEEP_ADMIN_USER and VMKEEP_ADMIN_PASSWORD (set by scripts/appliance.sh).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { buildExt4Image, buildRandomZeroImage } from '../test/peers/disk-images';
import { startVcsim } from '../test/peers/vcsim';

async function api<T>(base: string, token: string | undefined, method: string, route: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route} → ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

async function main(): Promise<void> {
  const base = process.env.VMKEEP_URL ?? 'http://127.0.0.1:8080';
  const dataDir = process.env.VMKEEP_DATA_DIR ?? path.resolve('data');
  const imageDir = path.join(dataDir, 'demo-images');
  await fs.mkdir(imageDir, { recursive: true });
  const [ext4, mixed, small] = await Promise.all([
    buildExt4Image({ dir: imageDir, seed: 'demo-1', sizeMiB: 64 }),
    buildRandomZeroImage({ dir: path.join(imageDir, 'b'), seed: 'demo-1', sizeMiB: 48 }),
    buildRandomZeroImage({ dir: path.join(imageDir, 'c'), seed: 'demo-2', sizeMiB: 16 }),
  ]);
  const sim = await startVcsim({
    seed: [
      { name: 'vmkeep-demo-1', powerOn: true, disks: [{ image: ext4.path }, { image: mixed.path }] },
      { name: 'vmkeep-demo-2', disks: [{ image: small.path }] },
    ],
  });
  const stop = async (): Promise<void> => {
    await sim.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  const { token } = await api<{ token: string }>(base, undefined, 'POST', '/api/auth/login', {
    username: process.env.VMKEEP_ADMIN_USER ?? 'admin',
    password: process.env.VMKEEP_ADMIN_PASSWORD,
  });
  const hosts = await api<{ id: string; name: string }[] | { items: { id: string; name: string }[] }>(base, token, 'GET', '/api/hosts');
  const list = Array.isArray(hosts) ? hosts : hosts.items;
  // A restarted demo keeps its host record (and so its VMs' restore points): only the address and pin change.
  const connection = { url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint };
  const existing = list.find((h) => h.name === 'demo-vcenter');
  const host = existing
    ? await api<{ id: string }>(base, token, 'PATCH', `/api/hosts/${existing.id}`, connection)
    : await api<{ id: string }>(base, token, 'POST', '/api/hosts', { name: 'demo-vcenter', ...connection });
  await api(base, token, 'POST', `/api/hosts/${host.id}/sync`);
  console.log(`demo vCenter ${sim.url} registered as "demo-vcenter" with VMs: ${sim.vms.map((v) => v.name).join(', ')}`);
  console.log('READY');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
