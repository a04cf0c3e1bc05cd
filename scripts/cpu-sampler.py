# CPU seconds of postgres, snowgate and snowgate-bench processes, every 0.2 s, into the file
# given (BENCHMARKS.md: what bounds the PostgreSQL burst). Run beside snowgate-bench; stop it
# with Ctrl-C.
import os, time, sys
tck = os.sysconf('SC_CLK_TCK')
out = open(sys.argv[1], 'w')
while True:
    tot = {'postgres':0, 'snowgate':0, 'snowgate-bench':0}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            s = open(f'/proc/{p}/stat').read()
        except OSError: continue
        comm = s[s.index('(')+1:s.rindex(')')]
        if comm in tot:
            f = s[s.rindex(')')+2:].split()
            tot[comm] += int(f[11]) + int(f[12])
    out.write(f"{time.time():.2f} {tot['postgres']/tck:.2f} {tot['snowgate']/tck:.2f} {tot['snowgate-bench']/tck:.2f}\n"); out.flush()
    time.sleep(0.2)
