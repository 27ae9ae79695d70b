import { InitialSchema1767225600000 } from './1767225600000-InitialSchema';
import { Policies1767312000000 } from './1767312000000-Policies';
import { RestorePointVmConfig1767398400000 } from './1767398400000-RestorePointVmConfig';

/** Every migration, oldest first. Append new ones here (see libs/persistence/README.md). */
export const MIGRATIONS = [InitialSchema1767225600000, Policies1767312000000, RestorePointVmConfig1767398400000];
