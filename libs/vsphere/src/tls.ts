/**
 * TLS policy for every connection to a host (SOAP and /folder alike):
 * - default: the certificate must chain to Node's CA store and match the host name;
 * - `thumbprint`: the presented certificate's SHA-256 (or SHA-1, if the pin is 40 hex digits) must equal the pin;
 * - `insecure`: anything is accepted.
 * The check runs on every new connection, before a single request byte is written (TLS session reuse is off,
 * so each connection shows its certificate again). A refusal is a CertificateError carrying the presented
 * certificate's SHA-256 thumbprint, so an admin can pin it.
 */
import { createHash } from 'node:crypto';
import * as https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { CertificateError, ConfigurationError, ConnectionError } from './errors';

export interface TlsPolicy {
  insecure?: boolean;
  thumbprint?: string | null;
}

/** "AA:BB:..." from raw digest bytes. */
export function formatThumbprint(digest: Buffer): string {
  return [...digest].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

/**
 * A pinned thumbprint in canonical form ("AA:BB:...", 20 or 32 bytes). Accepts upper/lower case hex with or
 * without colons, spaces or dashes; anything else is a ConfigurationError.
 */
export function normalizeThumbprint(input: string): string {
  const hex = input.trim().replace(/^sha(1|256)[:=\s]*/i, '').replace(/[:\s-]/g, '');
  if (!/^[0-9a-fA-F]+$/.test(hex) || (hex.length !== 40 && hex.length !== 64)) {
    throw new ConfigurationError('a certificate thumbprint must be 40 (SHA-1) or 64 (SHA-256) hex digits');
  }
  return formatThumbprint(Buffer.from(hex, 'hex'));
}

/** SHA-256 (and SHA-1) thumbprints of a DER certificate. */
export function certificateThumbprints(der: Buffer): { sha256: string; sha1: string } {
  return {
    sha256: formatThumbprint(createHash('sha256').update(der).digest()),
    sha1: formatThumbprint(createHash('sha1').update(der).digest()),
  };
}

/** Decides whether a connected socket's certificate is acceptable; returns the refusal or undefined. */
export function checkCertificate(
  socket: tls.TLSSocket,
  host: string,
  policy: TlsPolicy,
  pinned: string | undefined,
): CertificateError | undefined {
  if (policy.insecure) return undefined;
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.raw) return new CertificateError(`${host} presented no certificate`);
  const { sha256, sha1 } = certificateThumbprints(cert.raw);
  if (pinned) {
    const presented = pinned.length === 59 ? sha1 : sha256;
    if (presented === pinned) return undefined;
    return new CertificateError(
      `the certificate of ${host} (SHA-256 ${sha256}) does not match the pinned thumbprint`,
      sha256,
    );
  }
  if (!socket.authorized) {
    return new CertificateError(
      `the certificate of ${host} is not trusted (${String(socket.authorizationError)}); pin its thumbprint ${sha256} or mark the host insecure`,
      sha256,
    );
  }
  const identityError = tls.checkServerIdentity(host, cert);
  if (identityError) {
    return new CertificateError(`the certificate of ${host} does not name this host: ${identityError.message}`, sha256);
  }
  return undefined;
}

interface AgentOptions {
  host: string;
  policy: TlsPolicy;
  /** Connect + handshake timeout in ms. */
  timeoutMs: number;
}

type ConnectCallback = (err: Error | null, stream: Duplex) => void;

/**
 * A keep-alive HTTPS agent applying the TLS policy. It hands a socket to the HTTP layer only after the
 * certificate was accepted.
 */
export class VerifyingAgent extends https.Agent {
  private readonly pinned: string | undefined;

  constructor(private readonly settings: AgentOptions) {
    super({ keepAlive: true, maxSockets: 16, maxCachedSessions: 0 });
    this.pinned = settings.policy.thumbprint ? normalizeThumbprint(settings.policy.thumbprint) : undefined;
  }

  override createConnection(options: https.RequestOptions, callback?: ConnectCallback): Duplex | null | undefined {
    const done = callback ?? (() => undefined);
    const { host, policy, timeoutMs } = this.settings;
    const socket = tls.connect({
      ...(options as tls.ConnectionOptions),
      rejectUnauthorized: false,
      // A fresh handshake every time: the pin is checked on every connection.
      session: undefined,
    });
    let settled = false;
    const finish = (error: Error | null) => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      socket.off('error', onError);
      if (error) {
        socket.destroy();
        done(error, socket);
      } else {
        done(null, socket);
      }
    };
    const onError = (error: Error) => finish(error);
    socket.setTimeout(timeoutMs, () => finish(new ConnectionError(`cannot reach ${host}: connection timed out`)));
    socket.once('error', onError);
    socket.once('secureConnect', () => finish(checkCertificate(socket, host, policy, this.pinned) ?? null));
    return undefined;
  }
}

/**
 * The SHA-256 thumbprint ("AA:BB:...") of the certificate a host presents, whatever its trust; for an admin to
 * compare and pin. Throws ConnectionError when the host cannot be reached.
 */
export async function fetchThumbprint(url: string, timeoutMs = 15_000): Promise<string> {
  const target = parseHostUrl(url);
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host: target.hostname,
      port: target.port,
      servername: isIP(target.hostname) ? undefined : target.hostname,
      rejectUnauthorized: false,
    });
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new ConnectionError(`cannot reach ${target.hostname}: timed out`));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      reject(new ConnectionError(`cannot reach ${target.hostname}: ${error.code ?? error.message}`));
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      if (!cert?.raw) reject(new CertificateError(`${target.hostname} presented no certificate`));
      else resolve(certificateThumbprints(cert.raw).sha256);
    });
  });
}

/** https://host[:port][/...] → host name and port; a ConfigurationError for anything else. */
export function parseHostUrl(url: string): { hostname: string; port: number; origin: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigurationError(`not a valid URL: ${url}`);
  }
  if (parsed.protocol !== 'https:') throw new ConfigurationError(`the host URL must use https: ${parsed.origin}`);
  if (parsed.username || parsed.password) throw new ConfigurationError('the host URL must not contain credentials');
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return { hostname, port: Number(parsed.port || 443), origin: parsed.origin };
}
