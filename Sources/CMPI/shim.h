// Open MPI's C API for Swift. Its handles (MPI_COMM_WORLD, MPI_FLOAT, …) are macros over casts
// of global objects, which Swift does not import: these inline functions return them.
#include <mpi.h>

static inline MPI_Comm cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype cmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Op cmpi_sum(void) { return MPI_SUM; }
static inline MPI_Status *cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline const void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline int cmpi_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int cmpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
