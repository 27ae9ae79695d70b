// Placeholder: replaced by the peer starter (Redis, MariaDB).
export default async function globalSetup(): Promise<void> {}
