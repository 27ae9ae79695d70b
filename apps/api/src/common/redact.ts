// Moved to @vmkeep/persistence so the worker's JSON logs mask secrets the same way; kept here for the API's imports.
export { redactSecrets } from '@vmkeep/persistence';
