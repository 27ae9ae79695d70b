import { createHmac } from 'node:crypto';

/** Headers every webhook request carries (names in lower case, as Node gives them to receivers). */
export const SIGNATURE_HEADER = 'x-vmkeep-signature';
export const TIMESTAMP_HEADER = 'x-vmkeep-timestamp';
export const EVENT_HEADER = 'x-vmkeep-event';
export const DELIVERY_HEADER = 'x-vmkeep-delivery';

/**
 * `sha256=` + hex HMAC-SHA256 over `<timestamp>.<body>` with the webhook's secret. The timestamp (Unix seconds,
 * also sent in X-VMKeep-Timestamp) is part of the signed text so a receiver can refuse replays of old requests.
 */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export interface PostOutcome {
  ok: boolean;
  /** HTTP status; null when no answer came (refused, DNS, timeout). */
  status: number | null;
  /** Why it did not succeed (never contains the secret). */
  error?: string;
  durationMs: number;
}

/** One signed POST of `body` with a hard timeout; 2xx is success, anything else (or no answer) is a failure. */
export async function postSigned(
  url: string,
  body: string,
  secret: string,
  meta: { event: string; deliveryId: string },
  timeoutMs: number,
  now: () => number = Date.now,
): Promise<PostOutcome> {
  const started = now();
  const timestamp = Math.floor(started / 1000);
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'VMKeep-Webhook/1',
        [EVENT_HEADER]: meta.event,
        [DELIVERY_HEADER]: meta.deliveryId,
        [TIMESTAMP_HEADER]: String(timestamp),
        [SIGNATURE_HEADER]: signWebhook(secret, timestamp, body),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Read (and drop) the answer so the connection is released; a receiver's body is not kept.
    await res.arrayBuffer().catch(() => undefined);
    const durationMs = now() - started;
    return res.ok
      ? { ok: true, status: res.status, durationMs }
      : { ok: false, status: res.status, error: `the receiver answered HTTP ${res.status}`, durationMs };
  } catch (err) {
    const durationMs = now() - started;
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const error =
      e.name === 'TimeoutError' || e.name === 'AbortError'
        ? `no answer within ${timeoutMs} ms`
        : `request failed: ${e.cause?.code ?? e.cause?.message ?? e.message}`;
    return { ok: false, status: null, error, durationMs };
  }
}
