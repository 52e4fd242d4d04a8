#!/usr/bin/env bash
# Prints what runs where in the lab after `make lab` (molecule scenario `stack`).
set -euo pipefail
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' lab-iris 2>/dev/null) \
  || { echo "the lab is not running: make lab" >&2; exit 1; }
cat <<INFO

The lab (molecule scenario 'stack', converged with playbooks/site.yml):
$(docker ps --filter label=owner=molecule --format '  {{.Names}}\t{{.Image}}\t{{.Status}}')

  lab-iris   DFIR-IRIS (Docker inside: nginx, app, worker, db, rabbitmq) on https://lab-iris:9094
  lab-wazuh  real Wazuh manager (built from source): forwarder, OpenCTI enrichment, AI worker (+ OpenCTI/Ollama emulators)

Reach IRIS from this machine (TLS verified with the lab's own CA):
  docker exec lab-iris cat /opt/iris/certificates/rootCA/irisRootCACert.pem > .cache/lab-ca.pem
  curl --cacert .cache/lab-ca.pem --resolve lab-iris:9094:$ip https://lab-iris:9094/api/ping \\
       -H "Authorization: Bearer \$(docker exec lab-iris sed -n 's/^IRIS_ADM_API_KEY=//p' /opt/iris/.env)"
  admin login: administrator / \$(docker exec lab-iris sed -n 's/^IRIS_ADM_PASSWORD=//p' /opt/iris/.env)

Inject a test alert (it appears in IRIS, then gets one AI comment and the tag ai-reviewed):
  lab/inject-alert.sh

Shell on a host: docker exec -it lab-iris bash | docker exec -it lab-wazuh bash
Remove the lab:  make lab-destroy
INFO
