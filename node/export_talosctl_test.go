package node

import "context"

// TalosctlKey plans a talosctl binary of a version on this node and returns its recipe key.
func (n *Node) TalosctlKey(version, name string) (string, error) {
	r, err := n.catalog.PlanTalosctl(context.Background(), version, name)

	return r.Key, err
}
