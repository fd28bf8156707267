/* Submits one request, awaits its outcome and prints it as one JSON line:
 * {"requestId":..,"status":..,"error":..,"attempts":..,"result":..}. The
 * result is printed as it came when it is a JSON object, else as a string.
 *
 *   perfq-c-await --queue Q --type T --user U [--payload JSON] [--timeout-ms MS]
 */
#include <perfq/perfq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_string(const char* s, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

int main(int argc, char** argv) {
  const char* queue = NULL;
  const char* payload = "{}";
  long timeout_ms = 30000;
  perfq_request r;
  perfq_request_init(&r);
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--queue") == 0)
      queue = argv[i + 1];
    else if (strcmp(argv[i], "--type") == 0)
      r.type = argv[i + 1];
    else if (strcmp(argv[i], "--user") == 0)
      r.user_id = argv[i + 1];
    else if (strcmp(argv[i], "--payload") == 0)
      payload = argv[i + 1];
    else if (strcmp(argv[i], "--timeout-ms") == 0)
      timeout_ms = strtol(argv[i + 1], NULL, 10);
  }
  if (queue == NULL || r.type == NULL || r.user_id == NULL) {
    fputs("usage: perfq-c-await --queue Q --type T --user U [--payload JSON] [--timeout-ms MS]\n",
          stderr);
    return 2;
  }
  r.payload = payload;
  r.payload_len = strlen(payload);

  perfq_producer* p = NULL;
  perfq_errc rc = perfq_producer_open(queue, NULL, &p);
  if (rc != PERFQ_OK) {
    fprintf(stderr, "await: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
    return 1;
  }
  perfq_submitted s;
  rc = perfq_submit(p, &r, &s);
  perfq_outcome o;
  if (rc == PERFQ_OK) rc = perfq_wait(p, s.request_id, timeout_ms, &o);
  if (rc != PERFQ_OK) {
    fprintf(stderr, "await: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
    perfq_producer_close(p);
    return 1;
  }
  char id[17];
  perfq_format_request_id(o.request_id, id);
  printf("{\"requestId\":\"%s\",\"status\":\"%s\",\"error\":", id, perfq_status_name(o.status));
  if (o.error == PERFQ_OK)
    printf("null");
  else
    printf("\"%s\"", perfq_errc_name(o.error));
  printf(",\"attempts\":%u,\"result\":", (unsigned)o.attempts);
  const char* res = (const char*)o.result;
  if (o.result_len > 0 && res[0] == '{' && res[o.result_len - 1] == '}') {
    fwrite(res, 1, o.result_len, stdout);
  } else {
    print_string(res != NULL ? res : "", o.result_len);
  }
  printf("}\n");
  perfq_outcome_free(&o);
  perfq_producer_close(p);
  return 0;
}
