// jest globalTeardown of the "integration" project: stops the peers global-setup.ts started.
import { startedPeers } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const peers = startedPeers().splice(0);
  const results = await Promise.allSettled(peers.map((p) => p.stop()));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) throw new Error(`stopping test peers failed: ${failed.map((f) => String(f.reason)).join('; ')}`);
}
