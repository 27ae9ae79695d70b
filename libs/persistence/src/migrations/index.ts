import { InitialSchema1767225600000 } from './1767225600000-InitialSchema';
import { Policies1767312000000 } from './1767312000000-Policies';
import { RestorePointVmConfig1767398400000 } from './1767398400000-RestorePointVmConfig';
import { Repositories1767484800000 } from './1767484800000-Repositories';
import { Observability1767571200000 } from './1767571200000-Observability';
import { LabelsQuiesceBase1767657600000 } from './1767657600000-LabelsQuiesceBase';
import { InstantSessions1767744000000 } from './1767744000000-InstantSessions';

/** Every migration, oldest first. Append new ones here (see libs/persistence/README.md). */
export const MIGRATIONS = [InitialSchema1767225600000, Policies1767312000000, RestorePointVmConfig1767398400000, Repositories1767484800000, Observability1767571200000, LabelsQuiesceBase1767657600000, InstantSessions1767744000000];
