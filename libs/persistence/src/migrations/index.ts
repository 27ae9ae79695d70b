import { InitialSchema1767225600000 } from './1767225600000-InitialSchema';

/** Every migration, oldest first. Append new ones here (see libs/persistence/README.md). */
export const MIGRATIONS = [InitialSchema1767225600000];
