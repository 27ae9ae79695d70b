/**
 * Keys for data that lives beside the repository but is not part of its chunk/index/manifest format (the guest
 * file index, for example). Each purpose gets its own pair of keys derived from the master keys with
 * HKDF-SHA256 (salt: the repository id; info: "vmkeep-subkey 1 <purpose>"), so a user of one purpose can never
 * open or forge another's data, and the master keys never leave the repository object.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { inspect } from 'node:util';
import { KEY_BYTES } from './constants';
import { type RepositoryKeys, seal, unseal } from './crypto';

const PURPOSE = /^[a-z0-9][a-z0-9.-]{0,63}$/;

/** Seals, opens and authenticates values for one purpose. Holds derived keys only; never printed. */
export class SubkeySealer {
  readonly #encKey: Buffer;
  readonly #macKey: Buffer;

  private constructor(derived: Buffer, readonly purpose: string) {
    this.#encKey = Buffer.from(derived.subarray(0, KEY_BYTES));
    this.#macKey = Buffer.from(derived.subarray(KEY_BYTES));
    derived.fill(0);
  }

  /** @internal the repository derives it (`Repository.subkeySealer`). */
  static derive(keys: RepositoryKeys, repositoryId: string, purpose: string): SubkeySealer {
    if (!PURPOSE.test(purpose)) throw new RangeError(`invalid subkey purpose ${JSON.stringify(purpose)}`);
    const ikm = Buffer.concat([keys.encKey, keys.idKey]);
    const derived = Buffer.from(hkdfSync('sha256', ikm, Buffer.from(repositoryId, 'utf8'), `vmkeep-subkey 1 ${purpose}`, 2 * KEY_BYTES));
    ikm.fill(0);
    return new SubkeySealer(derived, purpose);
  }

  /** AES-256-GCM: nonce ‖ ciphertext ‖ tag; `aad` binds the value to where it is stored. */
  seal(plain: Uint8Array, aad: string): Buffer {
    return seal(this.#encKey, plain, Buffer.from(aad, 'utf8'));
  }

  /** The plaintext of a sealed value, or undefined when it is damaged, forged or sealed for another `aad`. */
  open(sealed: Uint8Array, aad: string): Buffer | undefined {
    return unseal(this.#encKey, sealed, Buffer.from(aad, 'utf8'));
  }

  /** HMAC-SHA256 of `data` (keyed ids: equal data gives equal ids, without revealing the data). */
  mac(data: Uint8Array): Buffer {
    return createHmac('sha256', this.#macKey).update(data).digest();
  }

  toJSON(): string {
    return `[subkeys ${this.purpose}]`;
  }

  toString(): string {
    return `[subkeys ${this.purpose}]`;
  }

  [inspect.custom](): string {
    return `[subkeys ${this.purpose}]`;
  }
}
