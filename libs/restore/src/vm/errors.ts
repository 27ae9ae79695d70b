import { VmkeepError } from '@vmkeep/contracts';

/** A full VM restore the user can fix (bad target, name collision, missing flag); code as VmkeepError. */
export class VmRestoreError extends VmkeepError {}
