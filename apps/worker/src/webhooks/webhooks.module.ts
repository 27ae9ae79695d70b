import { Module } from '@nestjs/common';
import { QueueModule } from '@vmkeep/queue';
import { WebhookNotifier } from './webhook-notifier';
import { WebhookWorker } from './webhook-worker';

export { jobEvent, WebhookNotifier } from './webhook-notifier';
export { WebhookWorker } from './webhook-worker';

/** Registered once in WorkerModule; exports the notifier to the job workers. */
@Module({ imports: [QueueModule], providers: [WebhookNotifier, WebhookWorker], exports: [WebhookNotifier] })
export class WebhooksWorkerModule {}
