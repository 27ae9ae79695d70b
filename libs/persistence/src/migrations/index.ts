import { InitialSchema1767225600000 } from './1767225600000-InitialSchema';
import { Policies1767312000000 } from './1767312000000-Policies';

/** Every migration, oldest first. Append new ones here (see libs/persistence/README.md). */
export const MIGRATIONS = [InitialSchema1767225600000, Policies1767312000000];
