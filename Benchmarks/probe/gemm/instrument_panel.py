# Instruments panel_gemm.c (a copy; run.sh) with rdtsc per phase of each 96-row panel.
import sys
p=sys.argv[1]+'/panel_gemm.c'; s=open(p).read()
s=s.replace('#include <string.h>\n','#include <string.h>\n#include <x86intrin.h>\nunsigned long long cq_best[4]={~0ULL,0,0,0};\n',1)
a='        memset(ct, 0, (size_t)(npad * ldc) * sizeof(float));\n'; assert a in s
s=s.replace(a,'        unsigned long long T0=__rdtsc(), P1=0,P2=0;\n'+a)
a='                for (int64_t jr = 0; jr < nrows; jr++) weight_row(j, n0 + jr, k0, kc, row, wp + jr * row_bytes);\n'; assert a in s
s=s.replace(a,'            unsigned long long T1=__rdtsc();\n'+a+'            unsigned long long T2=__rdtsc(); P1+=T2-T1;\n')
a='            multiply_panel(kind, j->pn, j->xp, j->xsteps, k0 / kind->kstep, src'; assert a in s
i=s.index(a); e=s.index('\n',i)+1
s=s[:i]+'            unsigned long long T3=__rdtsc();\n'+s[i:e]+'            P2+=__rdtsc()-T3;\n'+s[e:]
a='        kind->store_t('; assert a in s
i=s.index(a); e=s.index('\n',i)+1
s=s[:i]+'        unsigned long long T4=__rdtsc();\n'+s[i:e]+'        unsigned long long T5=__rdtsc(); if(t==0 && npad==96 && T5-T0<cq_best[0]){cq_best[0]=T5-T0;cq_best[1]=P1;cq_best[2]=P2;cq_best[3]=T5-T4;}\n'+s[e:]
open(p,'w').write(s)
