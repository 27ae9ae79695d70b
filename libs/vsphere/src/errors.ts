/** Typed errors of the vSphere client. Messages never contain credentials. */
export class VsphereError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The host refused the user name or password (InvalidLogin). */
export class AuthenticationError extends VsphereError {}

/** The host could not be reached (DNS, refused, reset, timeout). */
export class ConnectionError extends VsphereError {}

/** The host's TLS certificate is not trusted and does not match the pinned thumbprint. */
export class CertificateError extends VsphereError {
  constructor(
    message: string,
    /** SHA-256 fingerprint of the certificate the host presented, so the admin can pin it. */
    readonly presentedThumbprint?: string,
  ) {
    super(message);
  }
}

/** A managed object (VM, snapshot, ...) no longer exists. */
export class NotFoundError extends VsphereError {}

/** Any other SOAP fault; `fault` is the fault type name (e.g. InvalidArgument, FileLocked). */
export class FaultError extends VsphereError {
  constructor(
    message: string,
    readonly fault: string,
  ) {
    super(message);
  }
}

/** A vSphere task ended in error. */
export class TaskError extends VsphereError {
  constructor(
    message: string,
    readonly fault?: string,
  ) {
    super(message);
  }
}

/** An option given to the client is malformed (e.g. a thumbprint that is not 40 or 64 hex digits, a bad URL). */
export class ConfigurationError extends VsphereError {}
