// lseek(SEEK_DATA / SEEK_HOLE) for Node, which has no lseek: a small Perl co-process (perl-base is
// part of every Debian system) answers "where is the next data / hole from offset X" for files it
// opens by path. Used only where QEMU's file driver would ask the same question (qemu-img map over
// raw layers and metadata-preallocated qcow2 files). Linux whence values; elsewhere, or when Perl
// is missing, `SeekProbe.start()` returns undefined and callers fall back to an approximation.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { platform } from 'node:process';

const SCRIPT = String.raw`
$| = 1;
my @fh;
while (my $line = <STDIN>) {
  chomp $line;
  my ($cmd, $id, $arg) = split / /, $line, 3;
  if ($cmd eq 'open') {
    if (open(my $f, '<', $arg)) { $fh[$id] = $f; print "ok\n"; } else { print "err\n"; }
  } elsif ($cmd eq 'seek') {
    my $f = $fh[$id];
    my $d = sysseek($f, $arg, 3);
    if (!defined $d) { print(($!{ENXIO}) ? "enxio\n" : "err\n"); next; }
    my $h = sysseek($f, $d + 0, 4);
    if (!defined $h) { print "err\n"; next; }
    print(($d + 0) . " " . ($h + 0) . "\n");
  }
}
`;

/** Where data and the following hole are, from an offset; 'enxio' = only a hole up to EOF. */
export type SeekAnswer = { data: number; hole: number } | 'enxio' | 'error';

export class SeekProbe {
  private buffered = '';
  private waiting: Array<(line: string) => void> = [];
  private nextId = 0;
  private readonly ids = new Map<string, number>();
  private dead = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
    const fail = () => {
      this.dead = true;
      for (const w of this.waiting.splice(0)) w('err');
    };
    child.on('error', fail);
    child.on('exit', fail);
    child.stdin.on('error', fail);
  }

  /** Start the helper; undefined when the platform or Perl does not allow it. */
  static async start(): Promise<SeekProbe | undefined> {
    if (platform !== 'linux') return undefined;
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn('perl', ['-e', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch {
      return undefined;
    }
    const probe = new SeekProbe(child);
    const ok = await new Promise<boolean>((resolve) => {
      child.once('spawn', () => resolve(true));
      child.once('error', () => resolve(false));
    });
    return ok && !probe.dead ? probe : undefined;
  }

  private ask(line: string): Promise<string> {
    if (this.dead) return Promise.resolve('err');
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(`${line}\n`);
    });
  }

  /** Open `path` in the helper; false when it cannot (the caller falls back). */
  async open(path: string): Promise<boolean> {
    if (path.includes('\n')) return false;
    if (this.ids.has(path)) return true;
    const id = this.nextId++;
    if ((await this.ask(`open ${id} ${path}`)) !== 'ok') return false;
    this.ids.set(path, id);
    return true;
  }

  async seek(path: string, offset: number): Promise<SeekAnswer> {
    const id = this.ids.get(path);
    if (id === undefined) return 'error';
    const r = await this.ask(`seek ${id} ${offset}`);
    if (r === 'enxio') return 'enxio';
    const m = /^(\d+) (\d+)$/.exec(r);
    return m ? { data: Number(m[1]), hole: Number(m[2]) } : 'error';
  }

  close(): void {
    if (this.dead) return;
    this.dead = true;
    this.child.stdin.end();
    this.child.kill();
  }
}
