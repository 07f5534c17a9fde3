/*
 * Shared memory between trainer processes on one host, for the collectives' same-host transport
 * (collectives/shared-memory.ts).
 *
 * Node can share memory between threads (SharedArrayBuffer) but not between processes, and its
 * Atomics.wait only wakes waiters of the same process. This addon supplies the two missing
 * pieces, nothing more:
 *   map(path, byteLength, create)     a file under /dev/shm mapped MAP_SHARED, as an ArrayBuffer
 *                                     (unmapped when the ArrayBuffer is collected); creating
 *                                     reserves its pages, so a full tmpfs is an error, not a SIGBUS
 *   wait(int32Array, index, expected, timeoutMs)
 *                                     futex wait on one element (process-shared), with a timeout:
 *                                     "ok" (woken, or the value already differed) or "timed-out"
 *   wake(int32Array, index)           futex wake of every waiter on that element
 *   sum(outputs, inputs, scale)       outputs[j][i] = (inputs[0][i] + … + inputs[n−1][i]) × scale,
 *                                     added in that order (float32): the reduction of one shard,
 *                                     vectorised by the compiler — a JS loop runs ~5× slower
 *
 * N-API only, so one build works for every Node version ≥ the one it was compiled with.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      napi_throw_error(env, NULL, "gantry shared memory: N-API call failed: " #call); \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static napi_value throw_errno(napi_env env, const char* what, const char* path) {
  char message[600];
  snprintf(message, sizeof message, "%s %s: %s", what, path, strerror(errno));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static void unmap(napi_env env, void* data, void* hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* The call's arguments into argv; false, after throwing `usage`, unless there are exactly n. */
static bool arguments(napi_env env, napi_callback_info info, size_t n, napi_value* argv, const char* usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != n) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

/* map(path: string, byteLength: number, create: boolean): ArrayBuffer */
static napi_value map(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!arguments(env, info, 3, argv, "map(path, byteLength, create)")) return NULL;
  char path[512];
  size_t path_length = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_length) != napi_ok || path_length == 0 ||
      path_length >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "map: path must be a non-empty string under 510 bytes");
    return NULL;
  }
  int64_t byte_length = 0;
  if (napi_get_value_int64(env, argv[1], &byte_length) != napi_ok || byte_length <= 0) {
    napi_throw_type_error(env, NULL, "map: byteLength must be a positive integer");
    return NULL;
  }
  bool create = false;
  if (napi_get_value_bool(env, argv[2], &create) != napi_ok) {
    napi_throw_type_error(env, NULL, "map: create must be a boolean");
    return NULL;
  }

  int fd = create ? open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, create ? "cannot create" : "cannot open", path);
  if (create) {
    /* Reserve every page now: a tmpfs that runs out of room later would kill the process with
     * SIGBUS on a plain store, where here it is a clean error (ENOSPC). */
    int rc = posix_fallocate(fd, 0, (off_t)byte_length);
    if (rc != 0) {
      int saved = rc;
      close(fd);
      unlink(path);
      errno = saved;
      return throw_errno(env, "cannot reserve room for", path);
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      close(fd);
      return throw_errno(env, "cannot stat", path);
    }
    if ((int64_t)st.st_size != byte_length) {
      close(fd);
      char message[700];
      snprintf(message, sizeof message, "%s holds %lld bytes, not the %lld expected", path, (long long)st.st_size,
               (long long)byte_length);
      napi_throw_error(env, NULL, message);
      return NULL;
    }
  }
  void* data = mmap(NULL, (size_t)byte_length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int saved = errno;
  close(fd);
  errno = saved;
  if (data == MAP_FAILED) {
    if (create) unlink(path);
    return throw_errno(env, "cannot map", path);
  }
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, data, (size_t)byte_length, unmap, (void*)(uintptr_t)byte_length, &buffer) !=
      napi_ok) {
    munmap(data, (size_t)byte_length);
    napi_throw_error(env, NULL, "map: this Node cannot wrap external memory in an ArrayBuffer");
    return NULL;
  }
  return buffer;
}

/* The int32 at (typedArray, index), checked. */
static int32_t* element(napi_env env, napi_value array, napi_value index_value) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = NULL;
  if (napi_get_typedarray_info(env, array, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "expected an Int32Array");
    return NULL;
  }
  int64_t index = -1;
  if (napi_get_value_int64(env, index_value, &index) != napi_ok || index < 0 || (size_t)index >= length) {
    napi_throw_range_error(env, NULL, "index out of range");
    return NULL;
  }
  return (int32_t*)data + index;
}

/* wait(int32Array, index, expected, timeoutMs): "ok" | "timed-out" */
static napi_value wait_on(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!arguments(env, info, 4, argv, "wait(int32Array, index, expected, timeoutMs)")) return NULL;
  int32_t* address = element(env, argv[0], argv[1]);
  if (!address) return NULL;
  int32_t expected = 0;
  double timeout_ms = 0;
  if (napi_get_value_int32(env, argv[2], &expected) != napi_ok ||
      napi_get_value_double(env, argv[3], &timeout_ms) != napi_ok || !(timeout_ms >= 0)) {
    napi_throw_type_error(env, NULL, "wait: expected must be an int32 and timeoutMs a number ≥ 0");
    return NULL;
  }
  struct timespec timeout;
  timeout.tv_sec = (time_t)(timeout_ms / 1000);
  timeout.tv_nsec = (long)((timeout_ms - (double)timeout.tv_sec * 1000) * 1e6);
  const char* outcome = "ok";
  /* Shared (not FUTEX_PRIVATE_FLAG): the waker is another process mapping the same file. */
  long rc = syscall(SYS_futex, address, FUTEX_WAIT, expected, &timeout, NULL, 0);
  if (rc != 0 && errno == ETIMEDOUT) outcome = "timed-out";
  /* EAGAIN: the value already differed; EINTR: a signal — both mean "look again". */
  napi_value result;
  CHECK(napi_create_string_utf8(env, outcome, NAPI_AUTO_LENGTH, &result));
  return result;
}

/* wake(int32Array, index): how many waiters were woken */
static napi_value wake(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!arguments(env, info, 2, argv, "wake(int32Array, index)")) return NULL;
  int32_t* address = element(env, argv[0], argv[1]);
  if (!address) return NULL;
  long woken = syscall(SYS_futex, address, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
  napi_value result;
  CHECK(napi_create_int32(env, woken < 0 ? 0 : (int32_t)woken, &result));
  return result;
}

#define MAX_SUM_ARRAYS 64

/* The float32 data of every Float32Array in a JS array; all must have `*length` elements (the
 * first sets it when *length is SIZE_MAX). Returns the count, or -1 after throwing. */
static int float_arrays(napi_env env, napi_value list, float** out, size_t* length, const char* what) {
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, list, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, list, &count) != napi_ok || count == 0 || count > MAX_SUM_ARRAYS) {
    char message[120];
    snprintf(message, sizeof message, "sum: %s must be an array of 1–%d Float32Arrays", what, MAX_SUM_ARRAYS);
    napi_throw_type_error(env, NULL, message);
    return -1;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    napi_typedarray_type type;
    size_t item_length = 0;
    void* data = NULL;
    if (napi_get_element(env, list, i, &item) != napi_ok ||
        napi_get_typedarray_info(env, item, &type, &item_length, &data, NULL, NULL) != napi_ok ||
        type != napi_float32_array) {
      char message[120];
      snprintf(message, sizeof message, "sum: %s[%u] is not a Float32Array", what, i);
      napi_throw_type_error(env, NULL, message);
      return -1;
    }
    if (*length == SIZE_MAX) *length = item_length;
    if (item_length != *length) {
      napi_throw_range_error(env, NULL, "sum: every array must have the same length");
      return -1;
    }
    out[i] = (float*)data;
  }
  return (int)count;
}

/* sum(outputs: Float32Array[], inputs: Float32Array[], scale: number): undefined */
static napi_value sum(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!arguments(env, info, 3, argv, "sum(outputs, inputs, scale)")) return NULL;
  float* outputs[MAX_SUM_ARRAYS];
  float* inputs[MAX_SUM_ARRAYS];
  size_t length = SIZE_MAX;
  int n_out = float_arrays(env, argv[0], outputs, &length, "outputs");
  if (n_out < 0) return NULL;
  int n_in = float_arrays(env, argv[1], inputs, &length, "inputs");
  if (n_in < 0) return NULL;
  double scale_value = 1;
  if (napi_get_value_double(env, argv[2], &scale_value) != napi_ok) {
    napi_throw_type_error(env, NULL, "sum: scale must be a number");
    return NULL;
  }
  const float scale = (float)scale_value;
  /* Blocks that stay in L1 between the passes over the inputs and the writes of the outputs. */
  const size_t block = 4096;
  for (size_t start = 0; start < length; start += block) {
    const size_t end = start + block < length ? start + block : length;
    float* restrict first = outputs[0];
    const float* restrict a = inputs[0];
    if (n_in == 1) {
      for (size_t i = start; i < end; i++) first[i] = a[i] * scale;
    } else {
      /* The scale is applied with the last input's addition, in the same pass. */
      const float* restrict b = inputs[1];
      if (n_in > 2 || scale == 1.0f) for (size_t i = start; i < end; i++) first[i] = a[i] + b[i];
      else for (size_t i = start; i < end; i++) first[i] = (a[i] + b[i]) * scale;
      for (int q = 2; q < n_in; q++) {
        const float* restrict c = inputs[q];
        if (q < n_in - 1 || scale == 1.0f) for (size_t i = start; i < end; i++) first[i] += c[i];
        else for (size_t i = start; i < end; i++) first[i] = (first[i] + c[i]) * scale;
      }
    }
    for (int j = 1; j < n_out; j++) memcpy(outputs[j] + start, first + start, (end - start) * sizeof(float));
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"map", NULL, map, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wait", NULL, wait_on, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wake", NULL, wake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sum", NULL, sum, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
