// GEMM probe (run.sh): best-of-N TSC cycles as % of the FMA peak measured in the same process.
#include "cqlora.h"
#include "kernels_internal.h"
#include <immintrin.h>
#include <x86intrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ACC 24
__attribute__((target("avx512f"))) static float peak_f32(long r){__m512 c[ACC];for(int j=0;j<ACC;j++)c[j]=_mm512_set1_ps((float)j);
 __m512 a=_mm512_set1_ps(1.0001f),b=_mm512_set1_ps(0.9999f);
 for(long i=0;i<r;i++){_Pragma("clang loop unroll(full)")for(int j=0;j<ACC;j++)c[j]=_mm512_fmadd_ps(a,b,c[j]);__asm__ volatile("":"+v"(a));}
 for(int j=1;j<ACC;j++)c[0]=_mm512_add_ps(c[0],c[j]);return _mm512_reduce_add_ps(c[0]);}
static float rnd(void){return (float)rand()/(float)RAND_MAX-0.5f;}
static void *al(size_t n){void*p;if(posix_memalign(&p,64,n?n:64))abort();memset(p,0,n);return p;}
static double PEAK; // flop per tsc cycle
#define BEST(reps, flop, body) ({unsigned long long best=~0ULL; for(int _r=0;_r<(reps);_r++){unsigned long long _a=__rdtsc(); body; _a=__rdtsc()-_a; if(_a<best)best=_a;} 100.0*(flop)/best/PEAK;})
int main(int argc,char**argv){
  int TH=argc>1?atoi(argv[1]):1, reps=argc>2?atoi(argv[2]):15;
  {unsigned long long best=~0ULL; for(int i=0;i<20;i++){unsigned long long a=__rdtsc(); volatile float sink=peak_f32(200000); (void)sink; a=__rdtsc()-a; if(a<best)best=a;} PEAK=200000.0*ACC*32/best;}
  printf("peak %.1f flop/tsc-cycle (= 164 GFLOP/s per core)\n",PEAK);
  float *x=al(4L*256*32*8),*w=al(4L*96*256),*ct=al(4L*96*256);
  for(long i=0;i<256*32*8L;i++)x[i]=rnd(); for(long i=0;i<96*256;i++)w[i]=rnd();
  printf("ukernel L1 %.0f%%  panel(96x256,M=256) %.0f%%\n", BEST(reps*10, 2.0*32*12*256, cq_gemm_kernel_avx512(x,w,256,256,ct,32)),
     BEST(reps, 2.0*256*96*256, for(int j0=0;j0<96;j0+=12) for(int p=0;p<8;p++) cq_gemm_kernel_avx512(x+p*256*32,w+j0*256,256,256,ct+j0*256+p*32,256)));
  int shapes[][3]={{256,1536,576},{256,576,1536},{256,576,576},{256,8192,576},{128,11008,4096}};
  for(int s=0;s<5;s++){int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2]; if(s==4&&argc<4)break;
    float *W=al(4L*N*K),*X=al(4L*M*K),*Y=al(4L*M*N),*DY=al(4L*M*N),*DX=al(4L*M*K);
    for(long i=0;i<(long)N*K;i++)W[i]=rnd(); for(long i=0;i<(long)M*K;i++)X[i]=rnd(); for(long i=0;i<(long)M*N;i++)DY[i]=rnd();
    long n=(long)N*K; uint8_t*pk=al((n+1)/2); float*am=al(4*(n/64+1)); int64_t bad; cq_quantize_4bit(W,n,64,CQ_NF4,pk,am,&bad,1);
    cq_qweight q={pk,N,K,64,cq_codebook(CQ_NF4),am,NULL,NULL,NULL,0,0};
    void*s1=al(cq_fused_linear_scratch_bytes(M,N,K,0,TH)+64),*s2=al(cq_matmul_nt_scratch_bytes(M,K,TH)+64);
    void*s3=al(cq_gemm_nn_scratch_bytes(M,N,K,1,TH)+64),*s4=al(cq_gemm_nn_scratch_bytes(M,N,K,0,TH)+64);
    double f=2.0*M*N*K/TH; int rr=s>=3?3:reps;
    double a=BEST(rr,f,cq_fused_linear(X,M,&q,NULL,NULL,0,0,NULL,Y,s1,TH));
    double b=BEST(rr,f,cq_matmul_nt(X,M,W,N,K,Y,s2,TH));
    double c=BEST(rr,f,cq_gemm_nn_q4(DY,M,&q,DX,s3,TH));
    double d=BEST(rr,f,cq_gemm_nn(DY,M,W,N,K,DX,s4,TH));
    printf("M=%d N=%-5d K=%-5d t%d %% of peak per core: fwd4bit %3.0f  nt-f32 %3.0f  nn4bit %3.0f  nn-f32 %3.0f\n",M,N,K,TH,a,b,c,d);
    free(W);free(X);free(Y);free(DY);free(DX);free(pk);free(am);free(s1);free(s2);free(s3);free(s4);}
  return 0;}
