/**
 * The crash test's service: one child process at a time on the same DATA_DIR and database,
 * SIGKILLed and restarted on demand, with the log of every run kept for the verdict.
 */
import { startChildService, type ChildService, type LogLine } from '../../test/support/service-harness.ts';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(ms, 0)));

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => (resolve = settle));
  return { promise, resolve };
}

/**
 * The service's lifecycle: one child at a time, killed and restarted on the same DATA_DIR and
 * database (the environment's DATABASE_URL, when it has one).
 * Clients await `up` before each attempt, so during a restart they wait instead of spinning.
 */
export class ServiceUnderTest {
  kills = 0;
  readonly unexpectedExits: string[] = [];
  /** The log of every process that has ended, for counting attachments across runs. */
  private readonly pastLogs: LogLine[][] = [];
  private current: { service: ChildService; closed: Promise<void>; killedByUs: boolean } | null = null;
  private up = deferred<string>();
  /** Kills and restarts one after another, never two at once. */
  private lifecycle: Promise<void> = Promise.resolve();

  /** `fatal` ends the run when the service died on its own and cannot be started again. */
  constructor(
    private readonly env: Record<string, string>,
    private readonly fatal: (error: unknown) => void,
  ) {}

  url(): Promise<string> {
    return this.up.promise;
  }

  child(): ChildService | null {
    return this.current?.service ?? null;
  }

  allLogs(): LogLine[] {
    return [...this.pastLogs.flat(), ...(this.current?.service.logs() ?? [])];
  }

  boot(): Promise<void> {
    return this.serially(() => this.start());
  }

  /** SIGKILL, then a restart on the same DATA_DIR. */
  crashAndRestart(): Promise<void> {
    return this.serially(async () => {
      this.kills += 1;
      await this.end('SIGKILL');
      await this.start();
    });
  }

  async stop(): Promise<void> {
    await this.serially(() => this.end('SIGTERM'));
  }

  private serially(step: () => Promise<void>): Promise<void> {
    const next = this.lifecycle.then(step);
    this.lifecycle = next.catch(() => undefined);
    return next;
  }

  private async start(): Promise<void> {
    const service = await startChildService(this.env);
    // 'close' (not 'exit') comes once stdout is drained, so the dead process's last lines are read.
    const closed = new Promise<void>((resolve) => service.child.once('close', () => resolve()));
    const run = { service, closed, killedByUs: false };
    this.current = run;
    void service.exited.then((code) => {
      if (run.killedByUs) return;
      // The service died by itself: a defect to report, and the clients still need a service.
      this.unexpectedExits.push(`exit code ${code} (signal ${service.child.signalCode})`);
      this.serially(async () => {
        if (this.current !== run) return;
        await this.end('SIGKILL');
        await this.start();
      }).catch((error: unknown) => {
        // Nothing left to deliver to: end the run now rather than at the watchdog.
        this.fatal(error);
      });
    });
    this.up.resolve(service.url);
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const run = this.current;
    if (run === null) return;
    this.current = null;
    // Clients failing from now on wait for the next process.
    this.up = deferred<string>();
    run.killedByUs = true;
    if (run.service.child.exitCode === null && run.service.child.signalCode === null) run.service.child.kill(signal);
    const gone = await Promise.race([run.closed.then(() => true), sleep(15_000).then(() => false)]);
    if (!gone) {
      run.service.child.kill('SIGKILL');
      await run.closed;
    }
    this.pastLogs.push(run.service.logs());
  }
}
