/* Submits N requests and prints their ids, one per line.
 *
 *   perfq-c-producer --queue Q --type T --user U [--count N] [--payload TEXT]
 */
#include <perfq/perfq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  const char* queue = NULL;
  const char* payload = "{}";
  perfq_request r;
  perfq_request_init(&r);
  long count = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--queue") == 0)
      queue = argv[i + 1];
    else if (strcmp(argv[i], "--type") == 0)
      r.type = argv[i + 1];
    else if (strcmp(argv[i], "--user") == 0)
      r.user_id = argv[i + 1];
    else if (strcmp(argv[i], "--count") == 0)
      count = strtol(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--payload") == 0)
      payload = argv[i + 1];
  }
  if (queue == NULL || r.type == NULL || r.user_id == NULL) {
    fputs("usage: perfq-c-producer --queue Q --type T --user U [--count N] [--payload TEXT]\n",
          stderr);
    return 2;
  }
  r.payload = payload;
  r.payload_len = strlen(payload);

  perfq_producer* p = NULL;
  perfq_errc rc = perfq_producer_open(queue, NULL, &p);
  if (rc != PERFQ_OK) {
    fprintf(stderr, "producer: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
    return 1;
  }
  for (long i = 0; i < count; ++i) {
    perfq_submitted s;
    rc = perfq_submit(p, &r, &s);
    if (rc != PERFQ_OK) {
      fprintf(stderr, "submit: %s: %s\n", perfq_errc_name(rc), perfq_last_error());
      perfq_producer_close(p);
      return 1;
    }
    char id[17];
    perfq_format_request_id(s.request_id, id);
    printf("%s\n", id);
  }
  perfq_producer_close(p);
  return 0;
}
