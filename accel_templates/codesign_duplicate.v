// Stream fork (DuplicateStreams): every input word goes to both outputs, WIDTH bits per word.
//
// The word is held in one register with a pending flag per output; each output takes it on its
// own handshake, so a slow consumer on one branch does not have to be ready on the same clock
// as the other (it only stops the fork from taking the *next* word). A new word is accepted when
// both outputs will be free after this clock (neither pending, or pending and taken now), which
// keeps one word per clock when both branches keep up. in0_V_TREADY depends combinationally on
// the two out TREADYs (one AND level), as in a plain register slice.
//
// Latency: 1 cycle (a word accepted at t is on both outputs at t + 1); II = 1.
module codesign_duplicate #(
    parameter integer WIDTH = 8
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [WIDTH-1:0] in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output wire [WIDTH-1:0] out_V_TDATA,
    output wire             out_V_TVALID,
    input  wire             out_V_TREADY,
    output wire [WIDTH-1:0] out1_V_TDATA,
    output wire             out1_V_TVALID,
    input  wire             out1_V_TREADY
);
    reg [WIDTH-1:0] d;
    reg p0, p1;                         // output 0 / 1 still has to take d
    wire free0 = !p0 || out_V_TREADY;
    wire free1 = !p1 || out1_V_TREADY;
    assign in0_V_TREADY = free0 && free1;
    wire fire = in0_V_TREADY && in0_V_TVALID;
    assign out_V_TDATA = d;
    assign out1_V_TDATA = d;
    assign out_V_TVALID = p0;
    assign out1_V_TVALID = p1;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            p0 <= 1'b0;
            p1 <= 1'b0;
        end else if (fire) begin
            p0 <= 1'b1;
            p1 <= 1'b1;
        end else begin
            if (out_V_TREADY) p0 <= 1'b0;
            if (out1_V_TREADY) p1 <= 1'b0;
        end
        if (fire) d <= in0_V_TDATA;
    end
endmodule
