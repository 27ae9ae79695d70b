// jest globalSetup of the "integration" project: starts Redis and MariaDB once for the whole run (unless
// TEST_REDIS_URL / TEST_MYSQL_URL already point at running servers) and publishes their URLs through
// process.env, which the test workers inherit. global-teardown.ts stops what was started here.
import { startMariadb } from './mariadb';
import type { Peer } from './process';
import { startRedis } from './redis';

/** Handles shared with global-teardown.ts (same process, same globalThis). */
export const PEERS_KEY = '__vmkeepTestPeers';

type PeerStore = { [PEERS_KEY]?: Peer[] };

export function startedPeers(): Peer[] {
  const store = globalThis as PeerStore;
  store[PEERS_KEY] ??= [];
  return store[PEERS_KEY];
}

export default async function globalSetup(): Promise<void> {
  const peers = startedPeers();
  const wanted: Array<[string, () => Promise<Peer>]> = [
    ['TEST_REDIS_URL', startRedis],
    ['TEST_MYSQL_URL', startMariadb],
  ];
  try {
    for (const [variable, start] of wanted) {
      if (process.env[variable]) continue;
      const peer = await start();
      peers.push(peer);
      process.env[variable] = peer.url;
    }
  } catch (err) {
    await Promise.allSettled(peers.splice(0).map((p) => p.stop()));
    throw err;
  }
}
