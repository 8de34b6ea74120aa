"""The bed's API server is upstream's: it validates endpoint addresses as any cluster's does.

Given the bed (built by e2e/bed/build.sh from the pinned k8s.io/kubernetes module with no
change), when an EndpointSlice names a loopback address, then the API server refuses it
(`ValidateEndpointIP`: a pod or node never has one), while a pod address is accepted.
"""

from __future__ import annotations

import pytest
from bedkit import E2ECluster
from kubernetes.client.rest import ApiException


def slice_with(address: str) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"generateName": "probe-", "labels": {"kubernetes.io/service-name": "probe"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address]}],
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
    }


def test_a_loopback_endpoint_address_is_refused(cluster: E2ECluster, namespace: str) -> None:
    with pytest.raises(ApiException) as refused:
        cluster.discovery.create_namespaced_endpoint_slice(namespace, slice_with("127.10.0.5"))
    assert refused.value.status == 422
    assert "loopback" in refused.value.body
    # A pod address on a node bridge is what real endpoints carry.
    cluster.discovery.create_namespaced_endpoint_slice(namespace, slice_with("10.244.1.200"))
