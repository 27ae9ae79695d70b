import { TOKEN_PREFIX } from './secrets';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const RULES: Array<[RegExp, string]> = [
  // Our bearer tokens, wherever they appear.
  [new RegExp(`${escape(TOKEN_PREFIX)}[A-Za-z0-9_-]{8,}`, 'g'), `${TOKEN_PREFIX}***`],
  // Authorization headers.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 ***'],
  // password=..., "password":"...", passphrase: ..., secret=..., token=..., also inside a longer key such as
  // guestPassword, webhook_secret, secretAccessKey or AWS_SECRET_ACCESS_KEY (JSON, query strings, key: value).
  [/(["']?(?<![A-Za-z0-9])[A-Za-z0-9_]*(?:password|passwd|passphrase|secret|token)[A-Za-z0-9_]*["']?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}]+)/gi, '$1***'],
  // SOAP bodies: <password>...</password> (vim25 Login).
  [/(<(?:\w+:)?password>)[^<]*(<\/(?:\w+:)?password>)/gi, '$1***$2'],
  // Credentials in URLs: scheme://user:secret@host.
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:)[^@\s/]+@/gi, '$1***@'],
];

/**
 * Masks what looks like a secret in text that is about to be logged (error messages and stacks of libraries,
 * which may quote requests, URLs or configuration). A last line of defence: code must not log secrets at all.
 */
export function redactSecrets(text: string): string {
  return RULES.reduce((out, [pattern, replacement]) => out.replace(pattern, replacement), text);
}
