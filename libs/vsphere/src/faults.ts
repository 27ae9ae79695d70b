/**
 * Turns what can go wrong on the wire into the typed errors of errors.ts. Messages name the host, never
 * credentials, and the original (axios) error is not attached: its config holds the request body, which for
 * Login contains the password.
 */
import {
  AuthenticationError,
  ConnectionError,
  FaultError,
  NotFoundError,
  TaskError,
  VsphereError,
} from './errors';
import { field, list, text, xsiType, type SoapValue } from './values';

/** Error codes of Node's net/tls/dns layers (and axios) that mean "could not talk to the host". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_CANCELED',
  'ERR_NETWORK',
  'ERR_BAD_RESPONSE',
]);

/** A typed error for a vSphere fault name and message. */
export function errorForFault(fault: string, message: string): VsphereError {
  switch (fault) {
    case 'InvalidLogin':
      return new AuthenticationError(message);
    case 'ManagedObjectNotFound':
      return new NotFoundError(message);
    default:
      return new FaultError(message, fault);
  }
}

/**
 * The fault name in a SOAP fault detail: `<detail><InvalidLoginFault xsi:type="InvalidLogin"/></detail>`.
 * Prefers the xsi:type, falls back to the element name without its "Fault" suffix.
 */
export function faultNameFromDetail(detail: SoapValue): string | undefined {
  if (typeof detail !== 'object' || detail === null) return undefined;
  for (const [element, value] of Object.entries(detail as Record<string, unknown>)) {
    if (element === 'attributes' || element === '$value') continue;
    const first = list(value)[0];
    return xsiType(first) ?? element.replace(/Fault$/, '');
  }
  return undefined;
}

/** The fault name of a LocalizedMethodFault (task info.error, missingSet). */
export function localizedFault(value: SoapValue): { fault: string; message: string } {
  const inner = field(value, 'fault');
  const fault = xsiType(inner) ?? 'VimFault';
  const message = text(field(value, 'localizedMessage')) || fault;
  return { fault, message };
}

export function taskErrorFrom(value: SoapValue, what: string): TaskError {
  const { fault, message } = localizedFault(value);
  return new TaskError(`${what} failed: ${message} (${fault})`, fault);
}

interface SoapErrorLike {
  message?: string;
  code?: string;
  cause?: unknown;
  root?: { Envelope?: { Body?: { Fault?: { faultstring?: unknown; detail?: unknown } } } };
  response?: { status?: number };
}

/** Walks an error and its causes, returning the first that is already one of ours. */
function findOwnError(error: unknown): VsphereError | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    if (current instanceof VsphereError) return current;
    current = (current as SoapErrorLike).cause;
  }
  return undefined;
}

function findCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const code = (current as SoapErrorLike).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    current = (current as SoapErrorLike).cause;
  }
  return undefined;
}

/**
 * Maps an error thrown by a node-soap call (or an HTTP request) to a typed error.
 * `host` is the host name used in messages; `operation` names what was attempted.
 */
export function mapSoapError(error: unknown, host: string, operation: string): VsphereError {
  const own = findOwnError(error);
  if (own) return own;

  const e = (error ?? {}) as SoapErrorLike;
  const fault = e.root?.Envelope?.Body?.Fault;
  if (fault) {
    const name = faultNameFromDetail(fault.detail) ?? 'SystemError';
    const message = text(fault.faultstring) || name;
    return errorForFault(name, `${operation} on ${host}: ${message}`);
  }
  const code = findCode(error);
  if (code) {
    const reason = code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? 'timed out' : code;
    return new ConnectionError(`cannot reach ${host} (${operation}): ${reason}`);
  }
  if (e.response?.status) {
    return new FaultError(`${operation} on ${host}: unexpected HTTP ${e.response.status}`, `HTTP${e.response.status}`);
  }
  if (/timeout/i.test(e.message ?? '')) return new ConnectionError(`cannot reach ${host} (${operation}): timed out`);
  return new VsphereError(`${operation} on ${host} failed: ${e.message ?? String(error)}`);
}
