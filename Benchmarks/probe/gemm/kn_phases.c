// Backward GEMM phases (run.sh): links a copy of the kernels instrumented by instrument_kn.py; per
// shape, the fastest 192-column chunk (pack R vs multiply) and the final store per element; dX
// rotates over 16 buffers (cold).
#include "cqlora.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern unsigned long long kn_best[4], kn_store[2];
static float rnd(void){return (float)rand()/(float)RAND_MAX-0.5f;}
static void *al(size_t n){void*p;if(posix_memalign(&p,64,n?n:64))abort();memset(p,0,n);return p;}
int main(int argc,char**argv){int TH=atoi(argv[1]); double PEAK=77.7;
 int shapes[][3]={{256,1536,576},{256,576,1536},{256,576,576},{256,8192,576}};
 for(int s=0;s<4;s++){int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2];
  float *w=al(4L*N*K),*dy=al(4L*M*N); float*dxs[16]; for(int u=0;u<16;u++)dxs[u]=al(4L*M*K);
  for(long i=0;i<(long)N*K;i++)w[i]=rnd(); for(long i=0;i<(long)M*N;i++)dy[i]=rnd();
  long n=(long)N*K; uint8_t*packed=al((n+1)/2); float*absmax=al(4*(n/64+1)); int64_t bad;
  cq_quantize_4bit(w,n,64,CQ_NF4,packed,absmax,&bad,1);
  cq_qweight q={packed,N,K,64,cq_codebook(CQ_NF4),absmax,NULL,NULL,NULL,0,0};
  void*s1=al(cq_gemm_nn_scratch_bytes(M,N,K,0,TH)+cq_gemm_nn_scratch_bytes(M,N,K,1,TH)+64);
  for(int v=0;v<2;v++){ kn_best[0]=~0ULL; kn_store[0]=~0ULL;
   for(int i=0;i<(s==3?3:12);i++){ if(v==0) cq_gemm_nn_q4(dy,M,&q,dxs[i%16],s1,TH); else cq_gemm_nn(dy,M,w,N,K,dxs[i%16],s1,TH);}
   printf("%s M=%d N=%d K=%d: best chunk %.0f%% of peak; pack R %.0f%% multiply %.0f%% (multiply alone %.0f%%); store %.2f cyc/elem (= %.1f%% of chunk-rate time)\n",v?"nn-f32 ":"nn4bit ",M,N,K,
     100.0*2*kn_best[3]/kn_best[0]/PEAK,100.0*kn_best[1]/kn_best[0],100.0*kn_best[2]/kn_best[0],100.0*2*kn_best[3]/kn_best[2]/PEAK,
     (double)kn_store[0]/kn_store[1], 100.0*kn_store[0]/((double)kn_best[0]/kn_best[3]*kn_store[1]*N));}
  free(w);free(dy);free(packed);free(absmax);free(s1);for(int u=0;u<16;u++)free(dxs[u]);}
 return 0;}
