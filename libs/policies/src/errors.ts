import { VmkeepError } from '@vmkeep/contracts';

/** A policy field has a value that cannot work; the message starts with the field's path (API: 400). */
export class PolicyValidationError extends VmkeepError {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`, 'invalid');
  }
}
