import { VmkeepError } from '@vmkeep/contracts';
import {
  AuthenticationError,
  CertificateError,
  ConfigurationError,
  ConnectionError,
  VsphereError,
} from '@vmkeep/vsphere';

/**
 * Codes of the VmkeepErrors this lib raises; apps/api maps them to HTTP statuses (not_found → 404,
 * conflict → 409, invalid → 400, host_* → 502).
 */
export const INVENTORY_ERROR_CODES = {
  notFound: 'not_found',
  conflict: 'conflict',
  invalid: 'invalid',
  hostAuth: 'host_auth',
  hostUnreachable: 'host_unreachable',
  hostCertificate: 'host_certificate',
  hostError: 'host_error',
} as const;

/** A vCenter/ESXi host could not be used; the message says why in words an admin can act on. */
export class HostConnectionError extends VmkeepError {
  constructor(
    message: string,
    code: string,
    /** Certificate problems: the SHA-256 thumbprint the host presented, to be pinned if trusted. */
    readonly presentedThumbprint?: string,
  ) {
    super(message, code);
  }
}

/** Wraps an error of the vSphere client into a HostConnectionError naming the host; other errors pass through. */
export function describeHostError(err: unknown, hostLabel: string): unknown {
  if (!(err instanceof VsphereError)) return err;
  const c = INVENTORY_ERROR_CODES;
  if (err instanceof AuthenticationError) {
    return new HostConnectionError(`${hostLabel}: the host refused the user name or password`, c.hostAuth);
  }
  if (err instanceof ConnectionError) {
    return new HostConnectionError(`${hostLabel}: host unreachable (${err.message})`, c.hostUnreachable);
  }
  if (err instanceof CertificateError) {
    const pin = err.presentedThumbprint
      ? `; it presented the certificate with SHA-256 thumbprint ${err.presentedThumbprint} — pin it if you trust it, or mark the host insecure`
      : '';
    return new HostConnectionError(
      `${hostLabel}: TLS certificate not trusted (${err.message})${pin}`,
      c.hostCertificate,
      err.presentedThumbprint,
    );
  }
  if (err instanceof ConfigurationError) return new VmkeepError(`${hostLabel}: ${err.message}`, c.invalid);
  return new HostConnectionError(`${hostLabel}: ${err.message}`, c.hostError);
}

export function notFound(what: string, id: string): VmkeepError {
  return new VmkeepError(`${what} ${id} not found`, INVENTORY_ERROR_CODES.notFound);
}
